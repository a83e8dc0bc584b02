"""Numba kernels for the layers' elementwise and row-wise passes, each checked against NumPy.

A chain of NumPy operations reads and writes the whole array once per operation and allocates
a temporary for most of them. A kernel computes the same formula in one loop: it reads each
input once and writes each output once. The NumPy versions stay in ``layers.py`` as the
readable references that the tests compare these kernels with:

- ``gelu_backward`` against ``layers.gelu_backward_reference`` (13 NumPy passes).
- ``gelu_tanh_argument`` and ``gelu_from_tanh``, the GELU forward before and after its tanh,
  against ``layers.gelu_forward_reference``. The tanh itself stays ``np.tanh``, which runs on
  SIMD instructions, whereas Numba calls the scalar C library ``tanh`` for each element (a
  whole forward in Numba measured about 9 times slower than NumPy's at the demo model's size).
- ``layernorm_forward`` and ``layernorm_backward`` against ``layers.layernorm_forward_reference``
  and ``layers.layernorm_backward_reference``. Row sums are taken in float64.
- ``embedding_backward`` against ``np.add.at``, which is slower for this scatter-add.

The kernels run on one thread. A ``prange`` version of ``gelu_backward`` measured several
times slower than this one on a shared 2-core machine at the demo model's sizes (B, T, 4C) =
(16, 128, 384). The serial loop takes about 0.4 ms there, so starting and joining the threads
is a large share of it.

Without the JIT (NUMBA_DISABLE_JIT=1) these kernels are Python loops, so ``layers`` uses the
NumPy versions then, and the tests call the kernels directly at small sizes.

Shapes:
    x, inner, tanh, out     (N,)    GELU forward, flattened
    x, tanh, dout, dx       (N,)    GELU backward, flattened
    x, out, xhat, dout, dx  (N, C)  LayerNorm, one row per token
    rstd                    (N,)
    weight, bias            (C,)
    dweight, dbias          (C,)    float64 accumulators for LayerNorm
    tokens                  (N,)    int64 ids, for the embedding
    dweight                 (V, C)  for the embedding
"""

from __future__ import annotations

import math

from .attention.compile import jit

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@jit()
def gelu_tanh_argument(x, inner):
    """Fill inner = sqrt(2/pi) (x + 0.044715 x^3), the argument of the GELU's tanh."""
    for i in range(x.shape[0]):
        xi = x[i]
        inner[i] = SQRT_2_OVER_PI * (xi + 0.044715 * xi * xi * xi)


@jit()
def gelu_from_tanh(x, tanh, out):
    """Fill out = 0.5 x (1 + tanh), the GELU, from the tanh of its argument."""
    for i in range(x.shape[0]):
        out[i] = 0.5 * x[i] * (1.0 + tanh[i])


@jit()
def gelu_backward(x, tanh, dout, dx):
    """Fill dx = dout * d/dx GELU(x), given tanh = tanh(sqrt(2/pi) (x + 0.044715 x^3))."""
    for i in range(x.shape[0]):
        xi, ti = x[i], tanh[i]
        dinner = SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * xi * xi)  # d/dx of tanh's argument
        dx[i] = dout[i] * (0.5 * (1.0 + ti) + 0.5 * xi * (1.0 - ti * ti) * dinner)


@jit()
def layernorm_forward(x, weight, bias, eps, out, xhat, rstd):
    """Fill out and xhat (N, C) and rstd (N,) for the rows of x (N, C), summing in float64."""
    N, C = x.shape
    for n in range(N):
        # pass 1: the mean of the row
        total = 0.0
        for c in range(C):
            total += x[n, c]
        mean = total / C

        # pass 2: the variance about the mean
        total = 0.0
        for c in range(C):
            centred = x[n, c] - mean
            total += centred * centred
        row_rstd = 1.0 / math.sqrt(total / C + eps)
        rstd[n] = row_rstd

        # pass 3: normalise, scale and shift
        for c in range(C):
            normalised = (x[n, c] - mean) * row_rstd
            xhat[n, c] = normalised
            out[n, c] = normalised * weight[c] + bias[c]


@jit()
def layernorm_backward(dout, xhat, rstd, weight, dx, dweight, dbias):
    """Fill dx (N, C) and add the gradients of weight and bias (C,) into float64 ``dweight``, ``dbias``."""
    N, C = dout.shape
    for n in range(N):
        # pass 1: the row means of dxhat = dout * weight and of dxhat * xhat, and the
        # parameter gradients sum(dout * xhat) and sum(dout) over the rows
        mean_dxhat = 0.0
        mean_dxhat_xhat = 0.0
        for c in range(C):
            dxhat = dout[n, c] * weight[c]
            mean_dxhat += dxhat
            mean_dxhat_xhat += dxhat * xhat[n, c]
            dweight[c] += dout[n, c] * xhat[n, c]
            dbias[c] += dout[n, c]
        mean_dxhat /= C
        mean_dxhat_xhat /= C

        # pass 2: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
        for c in range(C):
            dx[n, c] = rstd[n] * (dout[n, c] * weight[c] - mean_dxhat - xhat[n, c] * mean_dxhat_xhat)


@jit()
def embedding_backward(tokens, dout, dweight):
    """Add row n of dout (N, C) into row tokens[n] of dweight (V, C), in the order of n."""
    N, C = dout.shape
    for n in range(N):
        row = tokens[n]
        for c in range(C):
            dweight[row, c] += dout[n, c]
