"""Sweep expansion: a section's `sweep:` maps some of its keys to lists of values, and its runs
are the product of those lists (keys in alphabetical order, values in the order given) times its
learning rates and seeds.  Each swept setting names a directory level, KEY~VALUE, and a column of
every table; this module gives the combinations and their labels.  Pure: it imports nothing of
jitprop, so the config's checks and the run lists can both use it.
"""

import hashlib
import itertools
import json
import re


def canonical_json(value):
    """value as canonical JSON (sorted keys, no spaces): equal values, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


LABEL_LENGTH = 160  # of a path's 255 bytes
# CNN layers, as they appear in labels.
_SHORT = {"batchnorm": "bn", "dropout": "drop", "maxpool": "pool", "linear": "fc"}


def _label(value):
    """A value as a short, readable, filesystem-safe word: numbers as they read, lists joined
    by '-', mappings as key+value joined by '_', a CNN layer as conv8k3p1b, bn, pool2, fc10."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _SHORT.get(value, value)
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "none"
    if isinstance(value, list):
        return "-".join(_label(item) for item in value)
    conv = value.get("conv") if len(value) == 1 else None
    if isinstance(conv, dict) and {"out", "kernel"} <= set(conv):  # else the checks name it
        return (
            f"conv{conv['out']}k{conv['kernel']}"
            + (f"p{conv['padding']}" if conv.get("padding") else "")
            + ("b" if conv.get("bias") else "")
        )
    return "_".join(f"{_SHORT.get(key, key)}{_label(item)}" for key, item in sorted(value.items()))


def value_labels(values):
    """The labels of one swept key's values: _label made safe (characters other than letters,
    digits and ._+- become _), shortened past LABEL_LENGTH with a hash of the value, and made
    distinct, where two would be alike, by the hash."""
    labels, digests = [], [hashlib.sha1(canonical_json(v).encode()).hexdigest()[:8] for v in values]
    for value, digest in zip(values, digests, strict=True):
        text = re.sub(r"[^A-Za-z0-9._+-]", "_", _label(value)) or "_"
        labels.append(text if len(text) <= LABEL_LENGTH else f"{text[:120]}_{digest}")
    return [
        f"{label}_{digest}" if labels.count(label) > 1 else label
        for label, digest in zip(labels, digests, strict=True)
    ]


def combinations(section):
    """[(swept, settings)] in canonical order: swept is [(key, label)] of one combination of
    the section's sweep (keys sorted), settings the section with those values in place."""
    sweep = section.get("sweep") or {}
    keys = sorted(sweep)
    labelled = [list(zip(sweep[key], value_labels(sweep[key]), strict=True)) for key in keys]
    result = []
    for choice in itertools.product(*labelled):
        settings = {**section, **{key: value for key, (value, _) in zip(keys, choice, strict=True)}}
        result.append(
            ([(key, label) for key, (_, label) in zip(keys, choice, strict=True)], settings)
        )
    return result
