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
per BLOCK_Q query rows.

Measured reasons for the tile layout (one thread of an AMD EPYC Zen 4, float32, T = 4096,
hs = 64, CPU time per 64 x 64 block of scores while other jobs shared the machine, so about
10 %):

- 27 to 30 us with k and v^T tiles and the dot-product micro-kernel ``tiles.matmul_nt``;
- 24 us with k^T and v tiles in ``tiles.matmul_nn``, whose inner loop runs along rows;
- 19 to 20 us with every tile BLOCK_K keys wide, even the last, partly masked one. The
  width is then a compile-time constant in both products, and LLVM drops the loop
  remainders it otherwise needs. The padding keys are masked to -inf like the causal ones;
- 18 us with the exponential and the row sum in one loop;
- 15 to 16 us with 128 x 128 tiles instead of 64 x 64 (64 x 128: 16 to 17 us, 256 x 128:
  15 us, with more work wasted on the causal diagonal). At T = 1024 the 128 x 128 tiles
  took 4.6 ms against 5.2 ms (two heads, one thread).

The two products take about three quarters of the time, the softmax passes most of the rest.

Shapes (BH = B * NH, hs_pad = hs rounded up to a multiple of 4):
    q, q_far        (BH, Tq, hs)   contiguous, float32 or float64
    k, k_far, v     (BH, Tk, hs)
    out             (BH, Tq, hs)
    lse             (BH, Tq)       log-sum-exp of each row's scaled, masked scores
    q tile, acc     (BLOCK_Q, hs_pad)
    k^T tile        (hs_pad, BLOCK_K)
    v tile          (BLOCK_K, hs_pad)
    scores          (BLOCK_Q, BLOCK_K)
"""

from __future__ import annotations

import math

import numpy as np

from ..threads import run_work_items
from .compile import jit
from .tiles import exp_nonpositive, load_rows, load_rows_transposed, matmul_nn, round_up

#: Query rows per tile. Each query tile is one work item for the thread pool.
BLOCK_Q = 128
#: Keys per tile; a multiple of 4, as ``matmul_nn`` requires.
BLOCK_K = 128


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
def tile_scores(q_tile, k_t_tile, q_far_tile, k_far_t_tile, scores, far_scores, n_rows, n_cols,
                i_first, j_first, key_end, window, causal):
    """Fill scores[:n_rows, :n_cols] with the scaled, merged and masked scores of one tile.

    The key tiles are transposed, (hs_pad, n_cols), so ``matmul_nn`` reads rows of both.

    Keys at j >= key_end count as padding (past the input, or after every query of the tile).

    The q tiles hold q / sqrt(hs), so the products are already scaled. Masked entries
    (a key after the query when causal, or a padding key) are -inf.
    """
    hs_pad = q_tile.shape[1]
    i_last = i_first + n_rows - 1
    j_last = j_first + n_cols - 1
    needs_near, needs_far = tile_kind(i_first, i_last, j_first, j_last, window)

    # pass 1: the near or the far product, or both on the window boundary
    scores[:n_rows, :n_cols] = 0.0
    if needs_near:
        matmul_nn(q_tile, k_t_tile, scores, n_rows, n_cols, hs_pad)
        if needs_far:
            far_scores[:n_rows, :n_cols] = 0.0
            matmul_nn(q_far_tile, k_far_t_tile, far_scores, n_rows, n_cols, hs_pad)
            for r in range(n_rows):
                for c in range(n_cols):
                    if (i_first + r) - (j_first + c) >= window:
                        scores[r, c] = far_scores[r, c]
    else:
        matmul_nn(q_far_tile, k_far_t_tile, scores, n_rows, n_cols, hs_pad)

    # pass 2: the causal mask and the padding keys, only on tiles that have any
    crosses_diagonal = causal and j_last > i_first
    if crosses_diagonal or j_last >= key_end:
        for r in range(n_rows):
            i = i_first + r
            for c in range(n_cols):
                j = j_first + c
                if j >= key_end or (causal and j > i):
                    scores[r, c] = -np.inf


@jit(nogil=True)
def forward_items(q, k, v, q_far, k_far, window, causal, q_start, out, lse, first_item, stop_item):
    """Run the work items first_item .. stop_item - 1; releases the GIL, so threads overlap.

    A work item is a (bh, query block) pair: it fills out[bh, q0:q0 + BLOCK_Q] and
    lse[bh, q0:q0 + BLOCK_Q] by streaming over the key tiles. Under the causal mask late query
    blocks have more keys. Block numbers therefore alternate from both ends (0, n - 1, 1,
    n - 2, ...), so runs of consecutive items of equal length cost about the same. The tiles
    are allocated once per call and reused for every item.
    """
    Tq, hs = q.shape[1], q.shape[2]
    Tk = k.shape[1]
    hs_pad = round_up(hs, 4)
    n_blocks = (Tq + BLOCK_Q - 1) // BLOCK_Q
    scale = 1.0 / math.sqrt(hs)
    dtype = q.dtype
    has_far = window >= 0

    q_tile = np.zeros((BLOCK_Q, hs_pad), dtype)
    k_t_tile = np.zeros((hs_pad, BLOCK_K), dtype)
    q_far_tile = np.zeros((BLOCK_Q, hs_pad), dtype)
    k_far_t_tile = np.zeros((hs_pad, BLOCK_K), dtype)
    v_tile = np.zeros((BLOCK_K, hs_pad), dtype)
    scores = np.empty((BLOCK_Q, BLOCK_K), dtype)
    far_scores = np.empty((BLOCK_Q, BLOCK_K), dtype)
    acc = np.empty((BLOCK_Q, hs_pad), dtype)
    row_max = np.empty(BLOCK_Q, dtype)
    row_sum = np.empty(BLOCK_Q, dtype)

    for item in range(first_item, stop_item):
        bh = item // n_blocks
        b = item % n_blocks
        q0 = (b // 2 if b % 2 == 0 else n_blocks - 1 - b // 2) * BLOCK_Q
        n_rows = min(BLOCK_Q, Tq - q0)
        i_first = q_start + q0  # absolute position of the block's first query
        acc[:, :] = 0.0
        row_max[:] = -np.inf
        row_sum[:] = 0.0

        # pass 0: the query tile, pre-scaled by 1 / sqrt(hs)
        load_rows(q, bh, q0, n_rows, q_tile, scale)
        if has_far:
            load_rows(q_far, bh, q0, n_rows, q_far_tile, scale)

        # keys after the block's last query are masked
        key_end = min(Tk, i_first + n_rows) if causal else Tk
        for j0 in range(0, key_end, BLOCK_K):
            n_keys = min(BLOCK_K, key_end - j0)
            n_cols = BLOCK_K  # a constant width, even for the last tile: see the module docstring
            i_last, j_last = i_first + n_rows - 1, j0 + n_cols - 1
            needs_near, needs_far = tile_kind(i_first, i_last, j0, j_last, window)

            # pass 1: load the key and value tiles, then the tile's scores
            if needs_near:
                load_rows_transposed(k, bh, j0, n_keys, k_t_tile, 1.0)
            if needs_far:
                load_rows_transposed(k_far, bh, j0, n_keys, k_far_t_tile, 1.0)
            load_rows(v, bh, j0, n_keys, v_tile, 1.0)
            tile_scores(q_tile, k_t_tile, q_far_tile, k_far_t_tile, scores, far_scores,
                        n_rows, n_cols, i_first, j0, key_end, window, causal)

            # pass 2: online softmax. Rescale the running sum and output to the new row max (only
            # rows whose max grew), then turn the scores into P = exp(s - m_new) and add each
            # row of P to the running sum. Key 0 is never masked, so m_new is finite.
            for r in range(n_rows):
                m_new = row_max[r]
                for c in range(n_cols):
                    m_new = max(m_new, scores[r, c])
                if m_new > row_max[r]:
                    correction = math.exp(row_max[r] - m_new)
                    row_max[r] = m_new
                    row_sum[r] *= correction
                    for d in range(hs_pad):
                        acc[r, d] *= correction
            for r in range(n_rows):
                m = row_max[r]
                tile_sum = row_sum[r]
                for c in range(n_cols):
                    p = exp_nonpositive(scores[r, c] - m)
                    scores[r, c] = p
                    tile_sum += p
                row_sum[r] = tile_sum

            # pass 3: acc += P @ V
            matmul_nn(scores, v_tile, acc, n_rows, hs_pad, n_cols)

        # pass 4: normalise, and store each row's log-sum-exp for the backward
        for r in range(n_rows):
            inverse_sum = 1.0 / row_sum[r]
            for d in range(hs):
                out[bh, q0 + r, d] = acc[r, d] * inverse_sum
            lse[bh, q0 + r] = row_max[r] + math.log(row_sum[r])


def flash_attention_forward(q, k, v, q_far, k_far, window, causal, q_start, out, lse):
    """Fill ``out`` and ``lse``; ``window < 0`` means plain attention (q_far, k_far unused).

    The work items are shared among ``minitx.get_num_threads()`` threads.
    """
    BH, Tq = q.shape[0], q.shape[1]
    n_items = BH * ((Tq + BLOCK_Q - 1) // BLOCK_Q)
    args = (q, k, v, q_far, k_far, window, causal, q_start, out, lse)
    run_work_items(forward_items, args, n_items)
