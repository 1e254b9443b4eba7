"""Slow, obvious reference code the kernels are tested against: plain Python floats for the toy
net (written from the issue's equations, not from the kernels), plain NumPy for the MLP and the
CNN, and the plain loops whose order of operations the fast kernels keep (which the benchmarks
also compile, as the baselines of the kernels' speed)."""

import math

import numpy as np
from numba import prange  # range, outside Numba


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def toy_step(w, i, t):
    """Forward and backward of the 2-2-2 net; returns (cells dict, gradient list)."""
    w1, w2, w3, w4, w5, w6, w7, w8 = w
    i1, i2 = i
    t1, t2 = t
    h1 = w1 * i1 + w2 * i2
    h2 = w3 * i1 + w4 * i2
    out_h1, out_h2 = sigmoid(h1), sigmoid(h2)
    o1 = w5 * out_h1 + w6 * out_h2
    o2 = w7 * out_h1 + w8 * out_h2
    out_o1, out_o2 = sigmoid(o1), sigmoid(o2)
    E1 = 0.5 * (t1 - out_o1) ** 2
    E2 = 0.5 * (t2 - out_o2) ** 2
    # dE/dw5 = dE1/dout_o1 * dout_o1/do1 * do1/dw5, and so on (chain rule, by hand).
    dE_dout_o1, dE_dout_o2 = out_o1 - t1, out_o2 - t2
    dout_o1_do1, dout_o2_do2 = out_o1 * (1 - out_o1), out_o2 * (1 - out_o2)
    dE_dw5 = dE_dout_o1 * dout_o1_do1 * out_h1
    dE_dw6 = dE_dout_o1 * dout_o1_do1 * out_h2
    dE_dw7 = dE_dout_o2 * dout_o2_do2 * out_h1
    dE_dw8 = dE_dout_o2 * dout_o2_do2 * out_h2
    dE_dout_h1 = dE_dout_o1 * dout_o1_do1 * w5 + dE_dout_o2 * dout_o2_do2 * w7
    dE_dout_h2 = dE_dout_o1 * dout_o1_do1 * w6 + dE_dout_o2 * dout_o2_do2 * w8
    dE_dw1 = dE_dout_h1 * out_h1 * (1 - out_h1) * i1
    dE_dw2 = dE_dout_h1 * out_h1 * (1 - out_h1) * i2
    dE_dw3 = dE_dout_h2 * out_h2 * (1 - out_h2) * i1
    dE_dw4 = dE_dout_h2 * out_h2 * (1 - out_h2) * i2
    cells = {
        "h1": h1,
        "out_h1": out_h1,
        "h2": h2,
        "out_h2": out_h2,
        "o1": o1,
        "out_o1": out_o1,
        "o2": o2,
        "out_o2": out_o2,
        "E1": E1,
        "E2": E2,
        "E_total": E1 + E2,
    }
    return cells, [dE_dw1, dE_dw2, dE_dw3, dE_dw4, dE_dw5, dE_dw6, dE_dw7, dE_dw8]


def toy_train(w, i, t, lr, steps):
    """List of (weights before the step, cells, gradients), one per step."""
    w = list(w)
    rows = []
    for _ in range(steps):
        cells, grads = toy_step(w, i, t)
        rows.append((list(w), cells, grads))
        w = [wk - lr * gk for wk, gk in zip(w, grads, strict=True)]
    return rows


def toy_error(w, i, t):
    return toy_step(w, i, t)[0]["E_total"]


# --------------------------------------------------------------------------- MLP in NumPy

ACT = {
    "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(a.dtype)),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a: a * (1 - a)),
    "tanh": (np.tanh, lambda a: 1 - a**2),
}


def mlp_loss_and_grads(params, X, y, activation, loss):
    """Mean loss and gradients by matrix algebra, the textbook way."""
    f, fprime = ACT[activation]
    acts = [X]
    for W, b in params[:-1]:
        acts.append(f(acts[-1] @ W + b))
    logits = acts[-1] @ params[-1][0] + params[-1][1]
    B, K = logits.shape
    onehot = np.eye(K)[y]
    if loss == "cross_entropy":
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        value = -logp[np.arange(B), y].mean()
        delta = (np.exp(logp) - onehot) / B
    else:
        out = 1 / (1 + np.exp(-logits))
        value = (0.5 * ((onehot - out) ** 2).sum(axis=1)).mean()
        delta = (out - onehot) * out * (1 - out) / B
    grads = [None] * len(params)
    for layer in range(len(params) - 1, -1, -1):
        grads[layer] = (acts[layer].T @ delta, delta.sum(axis=0))
        if layer > 0:
            delta = (delta @ params[layer][0].T) * fprime(acts[layer])
    return value, grads


def mlp_predict(params, X, activation):
    f, _ = ACT[activation]
    a = X
    for W, b in params[:-1]:
        a = f(a @ W + b)
    return np.argmax(a @ params[-1][0] + params[-1][1], axis=1)


def sgd_momentum(params, velocity, grads, lr, momentum, weight_decay):
    """One SGD-with-momentum update; weight decay on matrices only.  Returns new lists."""
    new_params, new_velocity = [], []
    for (W, b), (vW, vb), (dW, db) in zip(params, velocity, grads, strict=True):
        vW = momentum * vW + dW + weight_decay * W
        vb = momentum * vb + db
        new_params.append((W - lr * vW, b - lr * vb))
        new_velocity.append((vW, vb))
    return new_params, new_velocity


def linear_one_term_at_a_time(out, x, W, b):
    """out (B, H) = b + x[n, 0] W[0] + x[n, 1] W[1] + ..., each product rounded, zero x
    skipped: the order every layer kernel of jitprop.kernels.dense keeps, so they must give
    these bits exactly, however they block and vectorize.  Plain loops, which
    benchmarks/mlp_tricks.py also compiles as the baseline of the kernels' speed tricks."""
    for n in range(x.shape[0]):
        for j in range(W.shape[1]):
            out[n, j] = b[j]
        for k in range(x.shape[1]):
            a = x[n, k]
            if a != 0:
                for j in range(W.shape[1]):
                    out[n, j] += a * W[k, j]


# --------------------------------------------------------------------------- CNN: plain loops


def conv_forward_one_at_a_time(out, xp, W, b):
    """out (Co, B, Ho, Wo) = the cross-correlation of xp (Ci, B, Hp, Wp) with W (Co, Ci, k, k),
    one output at a time: b, then every tap's product in (ci, ky, kx) order.  The order
    jitprop.kernels.conv's wide rows keep, so compiled with the same fused multiply-adds they
    must give its bits exactly (tests/test_cnn.py); benchmarks/cnn_conv.py compiles it as the
    baseline of the wide rows' speed."""
    Co, B, Ho, Wo = out.shape
    Ci, k = xp.shape[0], W.shape[2]
    for m in prange(Co * B):
        co, n = m // B, m % B
        for y in range(Ho):
            for x in range(Wo):
                acc = b[co]
                for ci in range(Ci):
                    for ky in range(k):
                        for kx in range(k):
                            acc += W[co, ci, ky, kx] * xp[ci, n, y + ky, x + kx]
                out[co, n, y, x] = acc


def conv_backward_params_running_sum(dW, dout, xp):
    """dW (Co, Ci, k, k) of the convolution above as one running sum over (n, y, x) per weight:
    the plain loop whose result conv_backward_params' parts and trees give to rounding."""
    Co, B, Ho, Wo = dout.shape
    Ci, k = xp.shape[0], dW.shape[2]
    for pair in prange(Co * Ci):
        co, ci = pair // Ci, pair % Ci
        for ky in range(k):
            for kx in range(k):
                acc = dW.dtype.type(0)
                for n in range(B):
                    for y in range(Ho):
                        for x in range(Wo):
                            acc += dout[co, n, y, x] * xp[ci, n, y + ky, x + kx]
                dW[co, ci, ky, kx] = acc


def maxpool_forward_window_by_window(out, argmax, x, k):
    """out (C, B, H/k, W/k) = each k x k window's maximum of x (C, B, H, W), argmax its place in
    the window (the first maximum; a NaN wins), a window at a time with a branch per value: the
    loop maps.maxpool_forward's branch-free 2 x 2 case must give the bits of, and its baseline
    in benchmarks/cnn_tricks.py."""
    C, B, Ho, Wo = out.shape
    for m in prange(C * B):
        c, n = m // B, m % B
        for i in range(Ho):
            for j in range(Wo):
                best, at = x[c, n, i * k, j * k], 0
                for t in range(1, k * k):
                    v = x[c, n, i * k + t // k, j * k + t % k]
                    if v > best or v != v:
                        best, at = v, t
                out[c, n, i, j], argmax[c, n, i, j] = best, at


def maxpool_backward_window_by_window(dx, dout, argmax, k):
    """dx (C, B, H, W): each window's gradient to its argmax, zeros elsewhere, a window at a
    time: the loop maps.maxpool_backward's vectors of windows must give the bits of."""
    C, B, Ho, Wo = dout.shape
    for m in prange(C * B):
        c, n = m // B, m % B
        dx[c, n] = 0
        for i in range(Ho):
            for j in range(Wo):
                t = argmax[c, n, i, j]
                dx[c, n, i * k + t // k, j * k + t % k] = dout[c, n, i, j]


def relu_forward_element_by_element(x):
    """x = max(x, 0) in place, x flat, one element a loop turn over the threads: the baseline
    of maps.relu_forward's chunks in benchmarks/cnn_tricks.py."""
    for i in prange(x.size):
        x[i] = max(x[i], x.dtype.type(0))


# --------------------------------------------------------------------------- CNN in NumPy
# Written from the layers' definitions (PyTorch's semantics), batch-major (N, C, H, W), with
# sliding windows and einsum; nothing shared with jitprop.cnn but the layer list.


def windows(xp, k):
    """(N, C, Ho, Wo, k, k) views of every k x k window of xp (N, C, H, W)."""
    return np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))


def conv_forward(x, W, b, padding):
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out = np.einsum("ncyxij,dcij->ndyx", windows(xp, W.shape[2]), W)
    return out + (0 if b is None else b[None, :, None, None])


def conv_backward(dout, x, W, padding):
    """(dx, dW, db) of conv_forward, by the chain rule on each window."""
    k = W.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dW = np.einsum("ndyx,ncyxij->dcij", dout, windows(xp, k))
    dxp = np.zeros_like(xp)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i : i + dout.shape[2], j : j + dout.shape[3]] += np.einsum(
                "ndyx,dc->ncyx", dout, W[:, :, i, j]
            )
    dx = dxp[:, :, padding : padding + x.shape[2], padding : padding + x.shape[3]]
    return dx, dW, dout.sum(axis=(0, 2, 3))


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    xhat = (x - mean) / np.sqrt(var + eps)
    return gamma[None, :, None, None] * xhat + beta[None, :, None, None], (xhat, var)


def batchnorm_backward(dy, cache, gamma, eps=1e-5):
    xhat, var = cache
    M = dy.shape[0] * dy.shape[2] * dy.shape[3]
    dbeta = dy.sum(axis=(0, 2, 3))
    dgamma = (dy * xhat).sum(axis=(0, 2, 3))
    dxhat = dy * gamma[None, :, None, None]
    total = dxhat.sum(axis=(0, 2, 3), keepdims=True)
    along = (dxhat * xhat).sum(axis=(0, 2, 3), keepdims=True)
    dx = (M * dxhat - total - xhat * along) / (M * np.sqrt(var + eps))
    return dx, dgamma, dbeta


def maxpool_forward(x, k):
    """The max of each k x k window, and the index in the window of its first maximum."""
    N, C, H, W = x.shape
    win = (
        x.reshape(N, C, H // k, k, W // k, k)
        .transpose(0, 1, 2, 4, 3, 5)
        .reshape(N, C, H // k, W // k, k * k)
    )
    return win.max(axis=-1), win.argmax(axis=-1)  # argmax: the first maximum


def maxpool_backward(dout, where, k, shape):
    N, C, Ho, Wo = dout.shape
    dwin = np.zeros((N, C, Ho, Wo, k * k))
    np.put_along_axis(dwin, where[..., None], dout[..., None], axis=-1)
    return dwin.reshape(N, C, Ho, Wo, k, k).transpose(0, 1, 2, 4, 3, 5).reshape(shape)


def cnn_forward(params, x, layers):
    """The network's output, (N, 10) or maps (N, C, H, W) of 10 values each (training-mode
    batch norm, no dropout), and each layer's cache."""
    caches = []
    for entry, param in zip(layers, params, strict=True):
        kind = entry if isinstance(entry, str) else next(iter(entry))
        value = None if isinstance(entry, str) else entry[kind]
        cache = x
        if kind == "conv":
            x = conv_forward(x, param["W"], param.get("b"), value.get("padding", 0))
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "batchnorm":
            x, cache = batchnorm_forward(x, param["gamma"], param["beta"])
        elif kind == "maxpool":
            x, where = maxpool_forward(x, value)
            cache = (cache.shape, where)
        elif kind == "gap":
            x = x.mean(axis=(2, 3))
        elif kind == "linear":
            x = x.reshape(len(x), -1) @ param["W"] + param["b"]
        caches.append(cache)  # dropout: the identity here
    return x, caches


def cnn_loss_and_grads(params, x, y, layers):
    """Mean cross-entropy and its gradients, by backpropagation written out layer by layer."""
    out, caches = cnn_forward(params, x[:, None], layers)
    logits = out.reshape(len(out), -1)  # maps flattened per sample, as PyTorch's view(N, 10)
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    N = len(y)
    loss = -logp[np.arange(N), y].mean()
    d = ((np.exp(logp) - np.eye(logits.shape[1])[y]) / N).reshape(out.shape)
    grads = [{} for _ in layers]
    for index in range(len(layers) - 1, -1, -1):
        entry, param, cache = layers[index], params[index], caches[index]
        kind = entry if isinstance(entry, str) else next(iter(entry))
        value = None if isinstance(entry, str) else entry[kind]
        if kind == "conv":
            d, grads[index]["W"], db = conv_backward(d, cache, param["W"], value.get("padding", 0))
            if "b" in param:
                grads[index]["b"] = db
        elif kind == "relu":
            d = d * (cache > 0)
        elif kind == "batchnorm":
            d, grads[index]["gamma"], grads[index]["beta"] = batchnorm_backward(
                d, cache, param["gamma"]
            )
        elif kind == "maxpool":
            shape, where = cache
            d = maxpool_backward(d, where, value, shape)
        elif kind == "gap":
            H, W = cache.shape[2:]
            d = np.broadcast_to(d[:, :, None, None] / (H * W), cache.shape)
        elif kind == "linear":
            flat = cache.reshape(len(cache), -1)
            grads[index]["W"], grads[index]["b"] = flat.T @ d, d.sum(axis=0)
            d = (d @ param["W"].T).reshape(cache.shape)
    return loss, grads


def lowbias32(z):
    """Wellons' lowbias32 hash of a 32-bit integer, in Python integers."""
    z &= 0xFFFFFFFF
    z ^= z >> 16
    z = (z * 0x7FEB352D) & 0xFFFFFFFF
    z ^= z >> 15
    z = (z * 0x846CA68B) & 0xFFFFFFFF
    return z ^ (z >> 16)


def onecycle(lr, steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """PyTorch's OneCycleLR learning rates (anneal_strategy='cos', no three phases)."""
    initial, minimum = lr / div_factor, lr / div_factor / final_div_factor
    up_end, down_end = float(pct_start * steps) - 1, steps - 1

    def cos(start, end, pct):
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    return [
        cos(initial, lr, step / up_end)
        if step <= up_end
        else cos(lr, minimum, (step - up_end) / (down_end - up_end))
        for step in range(steps)
    ]
