"""Attention as plain loops compiled with Numba: one query row per iteration.

This is the first rung of the kernel ladder. Each rung computes the same function of
``reference.py``, is tested against it, and states what it changes and why:

1. ``kernels.attention_forward_rows`` (this file): one query row per iteration, the simplest
   correct loop nest.
2. ``flash_forward.flash_attention_forward``: query and key tiles, the online softmax and
   register-blocked tile products; ``api.forward`` uses it. The backward counterpart is
   ``flash_backward.flash_attention_backward``.

This kernel restates ``reference.attention_forward`` as explicit loops over flat (BH, T, hs)
arrays, where BH = B * NH. The reading order follows llm.c's CPU ``attention_forward``: for
each query row, pass 1 takes the scores and their max, pass 2 exponentiates and sums, pass 3
accumulates the weighted values.

Rows are independent, so the outer loop over (BH, query row) runs in parallel with ``prange``.
Memory beyond inputs and outputs is one (Tk,) score buffer per row.

NOTE: it reads every key once per query row, so it is limited by memory traffic rather than
arithmetic. The benchmarks (benchmarks/attention.py) time it beside the second rung.

Shapes:
    q, q_far        (BH, Tq, hs)  contiguous, float32 or float64
    k, k_far, v     (BH, Tk, hs)
    out             (BH, Tq, hs)
    lse             (BH, Tq)      log-sum-exp of each row's scores
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .compile import jit


# NOTE: this prange loop runs on Numba's OpenMP threads, and GNU OpenMP is not fork-safe. A
# process forked after this kernel ran is terminated when it calls the kernel, so start worker
# processes with multiprocessing's "spawn" method (Linux defaults to "fork").
@jit(parallel=True)
def attention_forward_rows(q, k, v, q_far, k_far, window, causal, q_start, out, lse):
    """Fill ``out`` and ``lse``; ``window < 0`` means no far scores (plain attention)."""
    BH, Tq, hs = q.shape
    Tk = k.shape[1]
    scale = 1.0 / math.sqrt(hs)

    for row in numba.prange(BH * Tq):
        bh = row // Tq
        t = row % Tq
        i = q_start + t  # absolute position of this query
        last = min(i, Tk - 1) if causal else Tk - 1
        scores = np.empty(last + 1, dtype=np.float64)

        # pass 1: scores q . k / sqrt(hs), near or far by distance, and their max
        row_max = -np.inf
        for j in range(last + 1):
            use_far = window >= 0 and i - j >= window
            dot = 0.0
            if use_far:
                for c in range(hs):
                    dot += q_far[bh, t, c] * k_far[bh, j, c]
            else:
                for c in range(hs):
                    dot += q[bh, t, c] * k[bh, j, c]
            scores[j] = dot * scale
            if scores[j] > row_max:
                row_max = scores[j]

        # pass 2: exponentiate and sum
        row_sum = 0.0
        for j in range(last + 1):
            scores[j] = math.exp(scores[j] - row_max)
            row_sum += scores[j]

        # pass 3: normalise and accumulate the values
        for c in range(hs):
            out[bh, t, c] = 0.0
        for j in range(last + 1):
            p = scores[j] / row_sum
            for c in range(hs):
                out[bh, t, c] += p * v[bh, j, c]
        lse[bh, t] = row_max + math.log(row_sum)
