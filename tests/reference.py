"""Slow, obvious reference code the kernels are tested against: plain Python floats for the toy
net (written from the issue's equations, not from the kernels), plain NumPy for the MLP."""

import math

import numpy as np


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
    skipped: the order every layer kernel of jitprop.layers keeps, so they must give these bits
    exactly, however they block and vectorize.  Plain loops, which benchmarks/mlp_tricks.py
    also compiles as the baseline of the kernels' speed tricks."""
    for n in range(x.shape[0]):
        for j in range(W.shape[1]):
            out[n, j] = b[j]
        for k in range(x.shape[1]):
            a = x[n, k]
            if a != 0:
                for j in range(W.shape[1]):
                    out[n, j] += a * W[k, j]
