"""The kernels: Numba-jitted functions on arrays that their callers allocate, each layer's forward
beside its backward.  Internal: jitprop.mlp, jitprop.cnn and jitprop.training call them.

- vectors: what the kernels share beneath them: LLVM-IR helpers for loops Numba cannot write
  (vectors of sums in registers, masked copies), buffers aligned to cache lines, fixed-order
  sums;
- conv, conv_loops: the convolution (forward, dW and dX side by side), and its inner loops;
- maps: the layers on feature maps: relu, batch norm, dropout, pooling, and their layouts;
- dense: fully connected layers (on CSR rows for the MLP's input), activations and losses;
- elementary: e ** x from adds and multiplies, the same bits on every machine;
- optim: the optimizers' updates of a flat parameter buffer.
"""
