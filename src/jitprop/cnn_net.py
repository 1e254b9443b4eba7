"""The convolutional network's structure and passes (internal; jitprop.cnn is the API): its
layers as specs parsed from the config's cnn.layers, with their shapes and errors that name a
layer; the flat parameter layout; the activation buffers; the forward and backward passes.

Shapes: B batch, C channels, H x W a feature map; maps are channel-major (C, B, H, W), see
jitprop.cnn_layers, whose kernels (and jitprop.layers' linear layer and loss) the passes call.
"""

import math
from collections import namedtuple

import numpy as np

from jitprop import cnn_layers as kernels
from jitprop import layers

IMAGE = (1, 28, 28)
CLASSES = 10
BATCHNORM_MOMENTUM, BATCHNORM_EPS = 0.1, 1e-5

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


def parse_layers(entries):
    """(specs, shapes): the Spec of every layer and the shape of every activation, the input's
    first; raises LayerError naming the layer that cannot work."""
    if not isinstance(entries, list) or not entries:
        raise LayerError("cnn.layers: expected a non-empty list of layers")
    specs = [parse_layer(index, entry) for index, entry in enumerate(entries)]
    shapes = [IMAGE]
    for index, spec in enumerate(specs):
        shapes.append(output_shape(index, spec, shapes[-1]))
    if math.prod(shapes[-1]) != CLASSES:
        raise LayerError(
            f"cnn.layers[{len(specs) - 1}] ({specs[-1].kind}): the network ends with "
            f"{shapes[-1]}; expected {CLASSES} outputs, one per class"
        )
    return specs, shapes


def _param_shapes(spec, shape):
    """[(name, shape, decays)] of a layer's parameters given its input shape."""
    if spec.kind == "conv":
        W = ("W", (spec.out, shape[0], spec.kernel, spec.kernel), 1)
        return [W, ("b", (spec.out,), 0)] if spec.bias else [W]
    if spec.kind == "batchnorm":
        return [("gamma", (shape[0],), 0), ("beta", (shape[0],), 0)]
    if spec.kind == "linear":
        return [("W", (math.prod(shape), spec.n), 1), ("b", (spec.n,), 0)]
    return []


def summary(entries):
    """The torchsummary-like table of a network: one row per layer with its index, layer,
    output shape and parameter count; the last row holds the total."""
    specs, shapes = parse_layers(entries)
    rows = []
    for index, (spec, entry, shape) in enumerate(zip(specs, entries, shapes[1:], strict=True)):
        count = sum(math.prod(s) for _, s, _ in _param_shapes(spec, shapes[index]))
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


def _describe(entry):
    if isinstance(entry, str):
        return entry
    ((kind, value),) = entry.items()
    if kind == "conv":
        extra = "".join(f", {key} {value[key]}" for key in ("padding", "bias") if key in value)
        return f"conv {value['out']}, kernel {value['kernel']}{extra}"
    return f"{kind} {value}"


# --------------------------------------------------------------------------- the network


class Network:
    """A parsed network: its layers' specs, activation shapes and the flat parameter layout."""

    def __init__(self, entries, dtype):
        self.specs, self.shapes = parse_layers(entries)
        self.dtype = np.dtype(dtype)
        self.layout, offset = [], 0
        for spec, shape in zip(self.specs, self.shapes, strict=False):
            entry = {}
            for name, param_shape, decays in _param_shapes(spec, shape):
                size = math.prod(param_shape)
                entry[name] = (offset, param_shape, decays)
                offset += size
            self.layout.append(entry)
        self.size = offset

    def views(self, theta):
        """[{name: view}] of theta, one dict per layer."""
        return [
            {
                name: theta[at : at + math.prod(shape)].reshape(shape)
                for name, (at, shape, _) in entry.items()
            }
            for entry in self.layout
        ]

    def segments(self):
        return [
            (at, at + math.prod(shape), decays)
            for entry in self.layout
            for at, shape, decays in entry.values()
        ]

    def pack(self, params):
        theta = np.empty(self.size, self.dtype)
        for views, given in zip(self.views(theta), params, strict=True):
            for name, view in views.items():
                view[...] = given[name]
        return theta

    def init(self, rng):
        """Parameters as PyTorch initializes its layers: weights and biases ~ U(+-1/sqrt(fan
        in)), drawn layer by layer from rng; batch norm's gamma 1 and beta 0."""
        theta = np.empty(self.size, self.dtype)
        for spec, views in zip(self.specs, self.views(theta), strict=True):
            if spec.kind == "batchnorm":
                views["gamma"][...], views["beta"][...] = 1, 0
            elif views:
                W = views["W"]
                fan_in = math.prod(W.shape[1:]) if spec.kind == "conv" else W.shape[0]
                for view in views.values():
                    view[...] = rng.uniform(
                        -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), view.shape
                    )
        return theta

    def new_stats(self):
        """Running mean 0 and variance 1 for every batch norm, {} for other layers."""
        return [
            {"mean": np.zeros(shape[0]), "var": np.ones(shape[0])}
            if spec.kind == "batchnorm"
            else {}
            for spec, shape in zip(self.specs, self.shapes, strict=False)
        ]


class Buffer:
    """Room for one activation of batches of up to B samples: a flat array, viewed for a batch
    of b as (C, b, H, W) for feature maps (channel-major, see jitprop.cnn_layers) or (b, F)."""

    def __init__(self, shape, B, dtype):
        self.shape, self.data = shape, kernels.aligned_zeros((B * math.prod(shape),), dtype)

    def view(self, b):
        size = b * math.prod(self.shape)
        if len(self.shape) == 3:
            C, H, W = self.shape
            return self.data[:size].reshape(C, b, H, W)
        return self.data[:size].reshape(b, self.shape[0])


class Pass:
    """Buffers for forward and backward passes over batches of up to B samples."""

    def __init__(self, network, B):
        self.network, self.B = network, B
        dtype, specs, shapes = network.dtype, network.specs, network.shapes
        # relu and dropout work in place: their output is their input's buffer (each buffer
        # feeds one layer).  Dropout after relu overwrites the relu output that relu's backward
        # pass reads, and that is still right: it zeroes a value only where it also zeroes the
        # gradient, and scales the others by a positive factor, keeping their sign.  Only the
        # layers before a buffer's reader write in it, so batch norm's input is still there for
        # its backward pass, which reads it again (for xhat, and the gate of a relu before).
        self.acts, self.dacts = [Buffer(shapes[0], B, dtype)], [Buffer(shapes[0], B, dtype)]
        for spec, shape in zip(specs, shapes[1:], strict=True):
            in_place = spec.kind in ("relu", "dropout")
            self.acts.append(self.acts[-1] if in_place else Buffer(shape, B, dtype))
            self.dacts.append(self.dacts[-1] if in_place else Buffer(shape, B, dtype))
        self.extra = []
        for spec, shape, out in zip(specs, shapes, shapes[1:], strict=False):
            extra = {}
            if spec.kind == "conv":
                C, H, W = shape
                p, k = spec.padding, spec.kernel
                padded = (C, H + 2 * p, W + 2 * p)
                if p:
                    extra["xp"], extra["dxp"] = Buffer(padded, B, dtype), Buffer(padded, B, dtype)
                extra["b0"] = np.zeros(out[0], dtype)
                extra["scratch"] = kernels.backward_params_scratch(
                    out[0], (padded[0], B, *padded[1:]), k, dtype
                )
            elif spec.kind == "batchnorm":
                extra["mean"], extra["inv_std"] = np.empty(shape[0]), np.empty(shape[0])
            elif spec.kind == "maxpool":
                extra["argmax"] = np.empty(B * math.prod(out), np.uint16)
            elif spec.kind == "dropout":
                extra["mask"] = np.empty(B * math.prod(out), np.uint8)
            elif spec.kind == "linear" and len(shape) == 3:
                extra["rows"] = Buffer((math.prod(shape),), B, dtype)
                extra["drows"] = Buffer((math.prod(shape),), B, dtype)
            self.extra.append(extra)
        # Layers whose work another layer's kernel does in its own passes over the same data:
        # a dropout after a batch norm (both ways), and the backward pass of a relu before one.
        kinds = [spec.kind for spec in specs]
        pairs = {index: kinds[index - 1 : index + 1] for index in range(1, len(specs))}
        self.fused_dropouts = {
            index
            for index, pair in pairs.items()
            if pair == ["batchnorm", "dropout"] and specs[index].p > 0
        }
        self.relus_before_batchnorm = {
            index - 1 for index, pair in pairs.items() if pair == ["relu", "batchnorm"]
        }
        self.no_mask = np.empty(0, np.uint8)
        # A network that ends in maps, (10, 1, 1) say, gives each sample's logits in (c, y, x)
        # order, as PyTorch's view(B, 10) does; the maps are channel-major, so the logits and
        # their gradient are laid out again as rows.
        self.logit_rows = None
        if len(shapes[-1]) == 3:
            self.logit_rows = (Buffer((CLASSES,), B, dtype), Buffer((CLASSES,), B, dtype))

    def input(self, b):
        """The batch's input, (1, b, 28, 28): write the images here before forward."""
        return self.acts[0].view(b)

    def forward(self, params, stats, B, training, keys):
        """acts[1:] from acts[0] for a batch of B; batch norm on the batch's statistics
        (updating `stats`) when training, else on `stats`; dropout with `keys` (one per layer)
        when keys is not None, else the identity.  Returns the logits (B, 10)."""
        for index, (spec, param, stat, extra) in enumerate(
            zip(self.network.specs, params, stats, self.extra, strict=True)
        ):
            x, out = self.acts[index].view(B), self.acts[index + 1].view(B)
            if spec.kind == "conv":
                xp = x
                if spec.padding:
                    xp = extra["xp"].view(B)
                    kernels.pad(xp, x, spec.padding)
                kernels.conv_forward(out, xp, param["W"], param.get("b", extra["b0"]))
            elif spec.kind == "relu":
                kernels.relu_forward(out.reshape(-1))
            elif spec.kind == "batchnorm":
                if training:
                    mask, key, drop = self._dropout_after(index, keys, out)
                    kernels.batchnorm_forward(
                        out,
                        extra["mean"],
                        extra["inv_std"],
                        x,
                        param["gamma"],
                        param["beta"],
                        stat["mean"],
                        stat["var"],
                        BATCHNORM_MOMENTUM,
                        BATCHNORM_EPS,
                        mask,
                        key,
                        drop,
                    )
                else:
                    kernels.batchnorm_evaluate(
                        out,
                        x,
                        param["gamma"],
                        param["beta"],
                        stat["mean"],
                        stat["var"],
                        BATCHNORM_EPS,
                    )
            elif spec.kind == "dropout":
                if (
                    keys is not None
                    and spec.p > 0
                    and not (training and index in self.fused_dropouts)
                ):
                    threshold, scale = _dropout(spec, out)
                    kernels.dropout_forward(
                        out.reshape(-1), extra["mask"][: out.size], keys[index], threshold, scale
                    )
            elif spec.kind == "maxpool":
                kernels.maxpool_forward(out, _argmax(extra, out), x, spec.k)
            elif spec.kind == "gap":
                kernels.gap_forward(out, x)
            else:  # linear
                if "rows" in extra:
                    x = extra["rows"].view(B)
                    kernels.maps_to_rows(x, self.acts[index].view(B))
                layers.dense_forward(out, x, param["W"], param["b"])
        if self.logit_rows is None:
            return self.acts[-1].view(B)
        logits = self.logit_rows[0].view(B)
        kernels.maps_to_rows(logits, self.acts[-1].view(B))
        return logits

    def backward(self, params, grads, B, keys):
        """Mirror of forward, layer by layer in reverse, from dacts[-1] (dloss/dlogits) down to
        the first layer's parameters; the input's gradient is not computed."""
        items = list(zip(self.network.specs, params, grads, self.extra, strict=True))
        for index in range(len(items) - 1, -1, -1):
            spec, param, grad, extra = items[index]
            x, out = self.acts[index].view(B), self.acts[index + 1].view(B)
            dx, dout = self.dacts[index].view(B), self.dacts[index + 1].view(B)
            first = index == 0
            if spec.kind == "conv":
                xp = extra["xp"].view(B) if spec.padding else x
                db = grad.get("b", extra["b0"][:0])
                kernels.conv_backward_params(grad["W"], db, dout, xp, *extra["scratch"])
                if not first:
                    d = extra["scratch"][0]
                    if spec.padding:
                        dxp = extra["dxp"].view(B)
                        kernels.conv_backward_input(dxp, d, param["W"])
                        kernels.unpad(dx, dxp, spec.padding)
                    else:
                        kernels.conv_backward_input(dx, d, param["W"])
            elif spec.kind == "relu":
                if index not in self.relus_before_batchnorm:
                    kernels.relu_backward(dout.reshape(-1), out.reshape(-1))
            elif spec.kind == "batchnorm":
                mask, _, (_, scale) = self._dropout_after(index, keys, out)
                kernels.batchnorm_backward(
                    dx,
                    grad["gamma"],
                    grad["beta"],
                    dout,
                    x,
                    extra["mean"],
                    extra["inv_std"],
                    param["gamma"],
                    mask,
                    scale,
                    index - 1 in self.relus_before_batchnorm,
                )
            elif spec.kind == "dropout":
                if keys is not None and spec.p > 0 and index not in self.fused_dropouts:
                    _, scale = _dropout(spec, dout)
                    kernels.dropout_backward(dout.reshape(-1), extra["mask"][: dout.size], scale)
            elif spec.kind == "maxpool":
                if not first:
                    kernels.maxpool_backward(dx, dout, _argmax(extra, dout), spec.k)
            elif spec.kind == "gap":
                if not first:
                    kernels.gap_backward(dx, dout)
            else:  # linear
                rows = extra["rows"].view(B) if "rows" in extra else x
                layers.dense_backward_params(grad["W"], grad["b"], dout, rows)
                if not first:
                    drows = extra["drows"].view(B) if "rows" in extra else dx
                    layers.dense_backward_input(drows, dout, param["W"])
                    if "rows" in extra:
                        kernels.rows_to_maps(dx, drows)

    def _dropout_after(self, index, keys, out):
        """(mask, key, (threshold, scale)) of the dropout after batch norm `index` on its output
        `out`, which batch norm's kernels do, or an empty mask if there is none to do."""
        if index + 1 in self.fused_dropouts and keys is not None:
            mask = self.extra[index + 1]["mask"][: out.size]
            return mask, keys[index + 1], _dropout(self.network.specs[index + 1], out)
        return self.no_mask, np.uint64(0), (0, out.dtype.type(1))

    def loss(self, logits, y):
        """(summed cross-entropy, correct predictions), dloss/dlogits into dacts[-1]."""
        B = y.size
        if self.logit_rows is None:
            return layers.cross_entropy_forward_backward(self.dacts[-1].view(B), logits, y)
        dlogits = self.logit_rows[1].view(B)
        result = layers.cross_entropy_forward_backward(dlogits, logits, y)
        kernels.rows_to_maps(self.dacts[-1].view(B), dlogits)
        return result


def _argmax(extra, out):
    return extra["argmax"][: out.size].reshape(out.shape)


def _dropout(spec, x):
    """(threshold, scale) of dropout_forward: drop below p * 2**32, scale the kept by 1/(1-p)."""
    return int(spec.p * 2**32), x.dtype.type(1 / (1 - spec.p))
