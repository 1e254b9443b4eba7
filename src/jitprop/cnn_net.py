"""The convolutional network's structure and passes (internal; jitprop.cnn is the API): the flat
parameter layout of its layers (parsed by jitprop.cnn_spec), the activation buffers, and the
forward and backward passes, which call the kernels of jitprop.kernels.

Shapes: B batch, C channels, H x W a feature map; maps are channel-major (C, B, H, W), see
jitprop.kernels.conv.
"""

import math

import numpy as np

from jitprop import data, inits
from jitprop.cnn_spec import param_shapes, parse_layers
from jitprop.kernels import conv, dense, maps
from jitprop.kernels.vectors import aligned_zeros

BATCHNORM_MOMENTUM, BATCHNORM_EPS = 0.1, 1e-5

# --------------------------------------------------------------------------- the network


class Network:
    """A parsed network: its layers' specs, activation shapes and the flat parameter layout."""

    def __init__(self, entries, dtype, image=data.IMAGE, classes=data.CLASSES):
        self.specs, self.shapes = parse_layers(entries, image, classes)
        self.classes = classes
        self.dtype = np.dtype(dtype)
        self.layout, offset = [], 0
        for spec, shape in zip(self.specs, self.shapes, strict=False):
            entry = {}
            for name, param_shape, decays in param_shapes(spec, shape):
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
                    view[...] = inits.uniform(rng, 1 / math.sqrt(fan_in), view.shape)
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
    of b as (C, b, H, W) for feature maps (channel-major, see jitprop.kernels.conv) or (b, F)."""

    def __init__(self, shape, B, dtype):
        self.shape, self.data = shape, aligned_zeros((B * math.prod(shape),), dtype)

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
                extra["scratch"] = conv.backward_params_scratch(
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
            self.logit_rows = (
                Buffer((network.classes,), B, dtype),
                Buffer((network.classes,), B, dtype),
            )

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
                    conv.pad(xp, x, spec.padding)
                conv.conv_forward(out, xp, param["W"], param.get("b", extra["b0"]))
            elif spec.kind == "relu":
                maps.relu_forward(out.reshape(-1))
            elif spec.kind == "batchnorm":
                if training:
                    mask, key, drop = self._dropout_after(index, keys, out)
                    maps.batchnorm_forward(
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
                    maps.batchnorm_evaluate(
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
                    maps.dropout_forward(
                        out.reshape(-1), extra["mask"][: out.size], keys[index], threshold, scale
                    )
            elif spec.kind == "maxpool":
                maps.maxpool_forward(out, _argmax(extra, out), x, spec.k)
            elif spec.kind == "gap":
                maps.gap_forward(out, x)
            else:  # linear
                if "rows" in extra:
                    x = extra["rows"].view(B)
                    maps.maps_to_rows(x, self.acts[index].view(B))
                dense.dense_forward(out, x, param["W"], param["b"])
        if self.logit_rows is None:
            return self.acts[-1].view(B)
        logits = self.logit_rows[0].view(B)
        maps.maps_to_rows(logits, self.acts[-1].view(B))
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
                conv.conv_backward_params(grad["W"], db, dout, xp, *extra["scratch"])
                if not first:
                    d = extra["scratch"][0]
                    if spec.padding:
                        dxp = extra["dxp"].view(B)
                        conv.conv_backward_input(dxp, d, param["W"])
                        conv.unpad(dx, dxp, spec.padding)
                    else:
                        conv.conv_backward_input(dx, d, param["W"])
            elif spec.kind == "relu":
                if index not in self.relus_before_batchnorm:
                    maps.relu_backward(dout.reshape(-1), out.reshape(-1))
            elif spec.kind == "batchnorm":
                mask, _, (_, scale) = self._dropout_after(index, keys, out)
                maps.batchnorm_backward(
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
                    maps.dropout_backward(dout.reshape(-1), extra["mask"][: dout.size], scale)
            elif spec.kind == "maxpool":
                if not first:
                    maps.maxpool_backward(dx, dout, _argmax(extra, dout), spec.k)
            elif spec.kind == "gap":
                if not first:
                    maps.gap_backward(dx, dout)
            else:  # linear
                rows = extra["rows"].view(B) if "rows" in extra else x
                dense.dense_backward_params(grad["W"], grad["b"], dout, rows)
                if not first:
                    drows = extra["drows"].view(B) if "rows" in extra else dx
                    dense.dense_backward_input(drows, dout, param["W"])
                    if "rows" in extra:
                        maps.rows_to_maps(dx, drows)

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
            return dense.cross_entropy_forward_backward(self.dacts[-1].view(B), logits, y)
        dlogits = self.logit_rows[1].view(B)
        result = dense.cross_entropy_forward_backward(dlogits, logits, y)
        maps.rows_to_maps(self.dacts[-1].view(B), dlogits)
        return result


def _argmax(extra, out):
    return extra["argmax"][: out.size].reshape(out.shape)


def _dropout(spec, x):
    """(threshold, scale) of dropout_forward: drop below p * 2**32, scale the kept by 1/(1-p)."""
    return int(spec.p * 2**32), x.dtype.type(1 / (1 - spec.p))
