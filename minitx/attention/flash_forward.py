"""Blocked, streaming attention forward: the second rung after ``kernels.attention_forward_rows``.

The output is computed one (BLOCK_Q queries) x (BLOCK_K keys) tile at a time with the online
softmax (Milakov & Gimelshein 2018, "Online normalizer calculation for softmax", algorithm 3).
The loop order is that of FlashAttention-2 (Dao 2023, algorithm 1). A query block keeps its
running row max m, row sum l and unnormalised output O while it streams over the key tiles:

    m_new = max(m, rowmax(S));  l = l * exp(m - m_new) + rowsum(exp(S - m_new))
    O = O * exp(m - m_new) + exp(S - m_new) @ V;  at the end out = O / l, lse = m + log(l)

so no (T, T) buffer exists. Extra memory is a few tiles per thread.

Self-Extend (Jin et al. 2024, section 3) is fused into the same pass. A tile whose distances
i - j all lie below ``window`` takes its scores from q_near . k_near, a tile whose distances all
reach ``window`` from q_far . k_far, and only the tiles on the i - j = window boundary compute
both products and pick per entry. The merged scores then go through the one softmax above.

The same kernel serves a full forward (q_start = 0, Tq = Tk), a single decoded token
(Tq = 1, q_start = Tk - 1) and chunked decoding (1 < Tq < Tk) against a KV cache.

Measured reason for this rung: the causal forward at T = 4096 (float32, B * NH = 8, hs = 64,
2 threads of a shared AMD EPYC) took 2.5 to 2.8 s in the row kernel and 0.77 to 0.80 s here
(benchmarks/attention.py). The row kernel reads every key once per query row, this one once
per BLOCK_Q query rows, and its tile products run in the register-blocked ``tiles.matmul_nt``.

Shapes (BH = B * NH, hs_pad = hs rounded up to a multiple of 4):
    q, q_far        (BH, Tq, hs)   contiguous, float32 or float64
    k, k_far, v     (BH, Tk, hs)
    out             (BH, Tq, hs)
    lse             (BH, Tq)       log-sum-exp of each row's scaled, masked scores
    q tile, acc     (BLOCK_Q, hs_pad)
    k tile          (BLOCK_K, hs_pad)
    v^T tile        (hs_pad, BLOCK_K)
    scores          (BLOCK_Q, BLOCK_K)
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .compile import jit
from .tiles import exp_shifted, load_rows, load_rows_transposed, matmul_nt, round_up

#: Query rows per tile. Each query tile is one work item for the thread pool.
BLOCK_Q = 64
#: Keys per tile; a multiple of 4, as ``matmul_nt`` requires.
BLOCK_K = 64


@jit()
def tile_kind(i_first, i_last, j_first, j_last, window):
    """Return (needs_near, needs_far) for a tile with query positions i and key positions j.

    ``window < 0`` means plain attention: every score is near.
    """
    if window < 0:
        return True, False
    needs_near = i_first - j_last < window  # the smallest distance i - j in the tile
    needs_far = i_last - j_first >= window  # the largest distance i - j in the tile
    return needs_near, needs_far


@jit()
def tile_scores(q_tile, k_tile, q_far_tile, k_far_tile, scores, far_scores, n_rows, n_cols, hs,
                i_first, j_first, key_end, window, causal):
    """Fill scores[:n_rows, :n_cols] with the scaled, merged and masked scores of one tile.

    Keys at j >= key_end count as padding (past the input, or after every query of the tile).

    The q tiles hold q / sqrt(hs), so the products are already scaled. Masked entries
    (a key after the query when causal, or a padding key) are -inf.
    """
    i_last = i_first + n_rows - 1
    j_last = j_first + n_cols - 1
    needs_near, needs_far = tile_kind(i_first, i_last, j_first, j_last, window)

    # pass 1: the near or the far product, or both on the window boundary
    scores[:n_rows, :n_cols] = 0.0
    if needs_near:
        matmul_nt(q_tile, k_tile, scores, n_rows, n_cols, hs)
        if needs_far:
            far_scores[:n_rows, :n_cols] = 0.0
            matmul_nt(q_far_tile, k_far_tile, far_scores, n_rows, n_cols, hs)
            for r in range(n_rows):
                for c in range(n_cols):
                    if (i_first + r) - (j_first + c) >= window:
                        scores[r, c] = far_scores[r, c]
    else:
        matmul_nt(q_far_tile, k_far_tile, scores, n_rows, n_cols, hs)

    # pass 2: the causal mask and the padding keys, only on tiles that have any
    crosses_diagonal = causal and j_last > i_first
    if crosses_diagonal or j_last >= key_end:
        for r in range(n_rows):
            i = i_first + r
            for c in range(n_cols):
                j = j_first + c
                if j >= key_end or (causal and j > i):
                    scores[r, c] = -np.inf


@jit()
def forward_query_block(q, k, v, q_far, k_far, window, causal, q_start, out, lse, bh, q0):
    """Compute out[bh, q0:q0 + BLOCK_Q] and lse[bh, q0:q0 + BLOCK_Q] by streaming over keys."""
    Tq, hs = q.shape[1], q.shape[2]
    Tk = k.shape[1]
    hs_pad = round_up(hs, 4)
    n_rows = min(BLOCK_Q, Tq - q0)
    i_first = q_start + q0  # absolute position of the block's first query
    scale = 1.0 / math.sqrt(hs)
    dtype = q.dtype
    has_far = window >= 0

    q_tile = np.zeros((BLOCK_Q, hs_pad), dtype)
    k_tile = np.zeros((BLOCK_K, hs_pad), dtype)
    q_far_tile = np.zeros((BLOCK_Q, hs_pad), dtype)
    k_far_tile = np.zeros((BLOCK_K, hs_pad), dtype)
    v_t_tile = np.zeros((hs_pad, BLOCK_K), dtype)
    scores = np.empty((BLOCK_Q, BLOCK_K), dtype)
    far_scores = np.empty((BLOCK_Q, BLOCK_K), dtype)
    acc = np.zeros((BLOCK_Q, hs_pad), dtype)
    row_max = np.full(BLOCK_Q, -np.inf, dtype)
    row_sum = np.zeros(BLOCK_Q, dtype)

    # pass 0: the query tile, pre-scaled by 1 / sqrt(hs)
    load_rows(q, bh, q0, n_rows, q_tile, scale)
    if has_far:
        load_rows(q_far, bh, q0, n_rows, q_far_tile, scale)

    key_end = min(Tk, i_first + n_rows) if causal else Tk  # keys after the last query are masked
    for j0 in range(0, key_end, BLOCK_K):
        n_keys = min(BLOCK_K, key_end - j0)
        n_cols = round_up(n_keys, 4)
        needs_near, needs_far = tile_kind(i_first, i_first + n_rows - 1, j0, j0 + n_cols - 1, window)

        # pass 1: load the key and value tiles, then the tile's scores
        if needs_near:
            load_rows(k, bh, j0, n_keys, k_tile, 1.0)
        if needs_far:
            load_rows(k_far, bh, j0, n_keys, k_far_tile, 1.0)
        load_rows_transposed(v, bh, j0, n_keys, v_t_tile, 1.0)
        tile_scores(q_tile, k_tile, q_far_tile, k_far_tile, scores, far_scores, n_rows, n_cols,
                    hs, i_first, j0, key_end, window, causal)

        # pass 2: online softmax. Rescale the running sum and output to the new row max, and
        # turn the scores into exp(s - m_new). Key 0 is never masked, so m_new is finite.
        for r in range(n_rows):
            m_new = row_max[r]
            for c in range(n_cols):
                m_new = max(m_new, scores[r, c])
            correction = math.exp(row_max[r] - m_new)
            row_max[r] = m_new
            row_sum[r] *= correction
            for d in range(hs_pad):
                acc[r, d] *= correction
        exp_shifted(scores, n_rows, n_cols, row_max)
        for r in range(n_rows):
            tile_sum = row_sum[r]
            for c in range(n_cols):
                tile_sum += scores[r, c]
            row_sum[r] = tile_sum

        # pass 3: acc += P @ V, with V^T so both operands are read along their last axis
        matmul_nt(scores, v_t_tile, acc, n_rows, hs_pad, n_cols)

    # pass 4: normalise, and store each row's log-sum-exp for the backward
    for r in range(n_rows):
        inverse_sum = 1.0 / row_sum[r]
        for d in range(hs):
            out[bh, q0 + r, d] = acc[r, d] * inverse_sum
        lse[bh, q0 + r] = row_max[r] + math.log(row_sum[r])


@jit(parallel=True)
def flash_attention_forward(q, k, v, q_far, k_far, window, causal, q_start, out, lse):
    """Fill ``out`` and ``lse``; ``window < 0`` means plain attention (q_far, k_far unused).

    Work items are (bh, query block) pairs, run in parallel. Under the causal mask late query
    blocks have more keys. Block numbers therefore alternate from both ends (0, n - 1, 1,
    n - 2, ...), so each contiguous share of items that the thread pool hands out costs about
    the same.
    """
    BH, Tq = q.shape[0], q.shape[1]
    n_blocks = (Tq + BLOCK_Q - 1) // BLOCK_Q
    for item in numba.prange(BH * n_blocks):
        bh = item // n_blocks
        b = item % n_blocks
        block = b // 2 if b % 2 == 0 else n_blocks - 1 - b // 2
        forward_query_block(q, k, v, q_far, k_far, window, causal, q_start, out, lse, bh, block * BLOCK_Q)
