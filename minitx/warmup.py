"""Compile the attention and layer kernels ahead of use, so a lesson's first call does not stall.

Numba compiles a kernel on its first call for each dtype. Without a warm on-disk cache this
takes seconds per kernel, and a notebook cell looks frozen meanwhile. Calling ``warmup()`` in
the first cell does all of it at once and returns how long it took. With a warm cache it
returns in well under a second.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from . import layer_kernels
from .attention import api

log = logging.getLogger(__name__)


def warmup(dtypes=("float32", "float64")) -> float:
    """Compile the forward, Self-Extend and backward kernels for ``dtypes``; return the seconds.

    Each kernel is called once on a tiny input: plain causal attention, Self-Extend, a decode
    step against a cache (q_start > 0) and the backward of each, plus the row kernel and the
    kernels of the layers (``layer_kernels``).
    """
    from .attention import kernels

    start = time.perf_counter()
    for name in dtypes:
        dtype = np.dtype(name)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtypes may contain 'float32' and 'float64', got {name!r}.")
        rng = np.random.default_rng(0)
        B, NH, T, hs = 1, 1, 6, 4
        q, k, v, q_far, k_far, dout = (rng.standard_normal((B, NH, T, hs)).astype(dtype) for _ in range(6))

        for window, far in ((None, (None, None)), (2, (q_far, k_far))):
            out, lse = api.forward(q, k, v, *far, window=window)
            api.backward(dout, q, k, v, out, lse, *far, window=window)
        api.forward(q[:, :, -1:], k, v, q_start=T - 1)  # decoding one token

        out3, lse2 = np.empty((B * NH, T, hs), dtype), np.empty((B * NH, T), dtype)
        flat = lambda a: a.reshape(B * NH, T, hs)  # (B, NH, T, hs) -> (BH, T, hs)
        kernels.attention_forward_rows(flat(q), flat(k), flat(v), flat(q), flat(k), -1, True, 0, out3, lse2)

        # the layers' kernels: GELU, LayerNorm forward and backward, embedding backward
        x = q.reshape(B * NH * T, hs)  # (B, NH, T, hs) -> (N, C)
        layer_kernels.gelu_tanh_argument(x.reshape(-1), np.empty(x.size, dtype))
        layer_kernels.gelu_from_tanh(x.reshape(-1), x.reshape(-1), np.empty(x.size, dtype))
        layer_kernels.gelu_backward(x.reshape(-1), x.reshape(-1), x.reshape(-1), np.empty(x.size, dtype))
        xhat, rstd = np.empty_like(x), np.empty(x.shape[0], dtype)
        layer_kernels.layernorm_forward(x, x[0], x[0], 1e-5, np.empty_like(x), xhat, rstd)
        layer_kernels.layernorm_backward(x, xhat, rstd, x[0], np.empty_like(x), np.zeros(hs), np.zeros(hs))
        layer_kernels.embedding_backward(np.zeros(x.shape[0], np.int64), x, np.zeros((1, hs), dtype))

    seconds = time.perf_counter() - start
    log.info("Attention kernels ready for %s in %.1f s.", ", ".join(dtypes), seconds)
    return seconds
