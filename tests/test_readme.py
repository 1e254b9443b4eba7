"""The README's Python example runs as written: only its MNIST directory is replaced."""

import re

import numpy as np


def test_python_example_runs(root, mnist_dir):
    readme = (root / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) == 1, "expected the README's one Python example"
    line = 'DIR = "resources/mnist"'
    assert line in blocks[0]
    code = blocks[0].replace(line, f"DIR = {str(mnist_dir)!r}")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)

    assert namespace["labels"].shape == (256,)
    assert np.isfinite(namespace["loss"])
    result = namespace["result"]  # the CNN's, one epoch on the 60,000 training images
    assert len(result["history"]) == 1
    assert not result["diverged"]
    assert np.mean(namespace["labels"] == namespace["y"]) > 0.8
    *layers, total = namespace["rows"]  # the per-layer table, then its total
    assert [row["index"] for row in layers] == list(range(len(namespace["layers"])))
    assert total["params"] == sum(row["params"] for row in layers) > 0
