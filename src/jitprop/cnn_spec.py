"""The CNN's layer list, as the config's cnn.layers gives it: each entry parsed into a Spec and
checked, the shape of every activation, the parameters each layer holds, and the per-layer table;
every error names the layer.  Pure: it imports nothing of jitprop and no Numba, so the config's
validation (on every Snakemake start) stays light.

Shapes: one sample's, (C, H, W) for feature maps, (F,) for vectors.
"""

import math
from collections import namedtuple

# --------------------------------------------------------------------------- layer specs
# A spec is what one entry of cnn.layers says, checked: kind and options.
Spec = namedtuple("Spec", ["kind", "out", "kernel", "padding", "bias", "p", "k", "n"])
_NO = {"out": 0, "kernel": 0, "padding": 0, "bias": False, "p": 0.0, "k": 0, "n": 0}
KINDS = ("conv", "relu", "batchnorm", "dropout", "maxpool", "gap", "linear")


class LayerError(ValueError):
    """A layer of cnn.layers cannot be built; the message names its index."""


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def parse_layer(index, entry):
    """The Spec of `entry`, one item of cnn.layers: 'relu', 'batchnorm', 'gap', or a mapping
    {conv: {out, kernel[, padding][, bias]}}, {dropout: p}, {maxpool: k}, {linear: n}."""
    where = f"cnn.layers[{index}]"
    if isinstance(entry, str):
        if entry not in ("relu", "batchnorm", "gap"):
            raise LayerError(f"{where}: unknown layer {entry!r}; expected one of {KINDS}")
        return Spec(entry, **_NO)
    if not (isinstance(entry, dict) and len(entry) == 1):
        raise LayerError(f"{where}: found {entry!r}; expected a layer name or {{name: options}}")
    ((kind, value),) = entry.items()
    if kind in ("relu", "batchnorm", "gap"):  # `- relu:` in YAML, a stray colon
        raise LayerError(f"{where} ({kind}): takes no options, found {value!r}; write '- {kind}'")
    if kind == "conv":
        allowed = {"out", "kernel", "padding", "bias"}
        if not isinstance(value, dict) or not {"out", "kernel"} <= set(value) <= allowed:
            raise LayerError(
                f"{where} (conv): found {value!r}; expected {{out, kernel[, padding][, bias]}}"
            )
        options = {"padding": 0, "bias": False, **value}
        if not (_positive_int(options["out"]) and _positive_int(options["kernel"])):
            raise LayerError(
                f"{where} (conv): out {options['out']!r}, kernel {options['kernel']!r}; expected "
                "whole numbers >= 1"
            )
        padding = options["padding"]
        if not (isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0):
            raise LayerError(f"{where} (conv): padding {padding!r}; expected a whole number >= 0")
        if not isinstance(options["bias"], bool):
            raise LayerError(f"{where} (conv): bias {options['bias']!r}; expected true or false")
        return Spec("conv", **{**_NO, **options})
    if kind == "dropout":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise LayerError(f"{where} (dropout): p {value!r}; expected a number in [0, 1)")
        return Spec("dropout", **{**_NO, "p": float(value)})
    if kind in ("maxpool", "linear"):
        if not _positive_int(value):
            raise LayerError(f"{where} ({kind}): {value!r}; expected a whole number >= 1")
        return Spec(kind, **{**_NO, ("k" if kind == "maxpool" else "n"): value})
    raise LayerError(f"{where}: unknown layer {kind!r}; expected one of {KINDS}")


def output_shape(index, spec, shape):
    """The shape of one sample after layer `index` given its input `shape`: (C, H, W) or (F,)."""
    where = f"cnn.layers[{index}] ({spec.kind})"
    maps = len(shape) == 3
    if spec.kind in ("conv", "batchnorm", "maxpool", "gap") and not maps:
        raise LayerError(f"{where}: input of shape {shape}; expected feature maps (C, H, W)")
    if spec.kind == "conv":
        C, H, W = shape
        size = min(H, W) + 2 * spec.padding
        if spec.kernel > size:
            raise LayerError(
                f"{where}: kernel {spec.kernel} larger than its padded input "
                f"{H + 2 * spec.padding}x{W + 2 * spec.padding}"
            )
        grow = 2 * spec.padding - spec.kernel + 1
        return (spec.out, H + grow, W + grow)
    if spec.kind == "maxpool":
        C, H, W = shape
        if H % spec.k or W % spec.k:
            raise LayerError(
                f"{where}: a {spec.k}x{spec.k} pool does not divide its {H}x{W} "
                "input; expected sides divisible by the pool"
            )
        return (C, H // spec.k, W // spec.k)
    if spec.kind == "gap":
        return (shape[0],)
    if spec.kind == "linear":
        return (spec.n,)
    return shape


def parse_layers(entries, image, classes):
    """(specs, shapes): the Spec of every layer and the shape of every activation, the input's
    first, for inputs of shape `image` (C, H, W) and `classes` outputs; raises LayerError
    naming the layer that cannot work."""
    if not isinstance(entries, list) or not entries:
        raise LayerError("cnn.layers: expected a non-empty list of layers")
    specs = [parse_layer(index, entry) for index, entry in enumerate(entries)]
    shapes = [tuple(image)]
    for index, spec in enumerate(specs):
        shapes.append(output_shape(index, spec, shapes[-1]))
    if math.prod(shapes[-1]) != classes:
        raise LayerError(
            f"cnn.layers[{len(specs) - 1}] ({specs[-1].kind}): the network ends with "
            f"{shapes[-1]}; expected {classes} outputs, one per class"
        )
    return specs, shapes


def param_shapes(spec, shape):
    """[(name, shape, decays)] of a layer's parameters given its input shape."""
    if spec.kind == "conv":
        W = ("W", (spec.out, shape[0], spec.kernel, spec.kernel), 1)
        return [W, ("b", (spec.out,), 0)] if spec.bias else [W]
    if spec.kind == "batchnorm":
        return [("gamma", (shape[0],), 0), ("beta", (shape[0],), 0)]
    if spec.kind == "linear":
        return [("W", (math.prod(shape), spec.n), 1), ("b", (spec.n,), 0)]
    return []


def summary(entries, image, classes):
    """The torchsummary-like table of a network on inputs of shape `image` with `classes`
    outputs: one row per layer with its index, layer, output shape and parameter count; the
    last row holds the total."""
    specs, shapes = parse_layers(entries, image, classes)
    rows = []
    for index, (spec, entry, shape) in enumerate(zip(specs, entries, shapes[1:], strict=True)):
        count = sum(math.prod(s) for _, s, _ in param_shapes(spec, shapes[index]))
        rows.append({"index": index, "layer": _describe(entry), "output": shape, "params": count})
    rows.append(
        {
            "index": None,
            "layer": "total",
            "output": None,
            "params": sum(row["params"] for row in rows),
        }
    )
    return rows


def multiply_adds(specs, shapes):
    """Multiply-adds of one sample's training step, from parse_layers' specs and shapes: the
    forward pass, the input gradients (but the first layer's) and the weight gradients of
    every convolution and linear layer."""
    total = 0
    for index, (spec, shape, out) in enumerate(zip(specs, shapes, shapes[1:], strict=False)):
        if spec.kind == "conv":
            forward = math.prod(out) * shape[0] * spec.kernel**2
        elif spec.kind == "linear":
            forward = math.prod(shape) * spec.n
        else:
            continue
        total += forward * (2 if index == 0 else 3)
    return total


def _describe(entry):
    if isinstance(entry, str):
        return entry
    ((kind, value),) = entry.items()
    if kind == "conv":
        extra = "".join(f", {key} {value[key]}" for key in ("padding", "bias") if key in value)
        return f"conv {value['out']}, kernel {value['kernel']}{extra}"
    return f"{kind} {value}"
