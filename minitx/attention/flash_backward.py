"""Blocked attention backward that recomputes the probabilities from the saved log-sum-exp.

FlashAttention-2 (Dao 2023, algorithm 2): the forward keeps only out and lse = m + log(l) per
row, so the backward rebuilds each probability tile as P = exp(S - lse) instead of storing the
(T, T) matrix. With D_i = sum_c dout[i, c] * out[i, c] (which equals sum_j P[i, j] dP[i, j]),
each (query tile, key tile) pair restates the forward lines it inverts:

    S  = q k^T / sqrt(hs)         ->  P  = exp(S - lse)
    out = P v                     ->  dv += P^T dout,   dP = dout v^T
    P = softmax(S)                ->  dS = P * (dP - D)
    S = q k^T / sqrt(hs)          ->  dq += dS k / sqrt(hs),   dk += dS^T q / sqrt(hs)

Self-Extend: an entry whose score came from the far copies sends its dS to dq_far and dk_far
instead, so tiles on the i - j = window boundary split dS into a near and a far part.

Parallel over BH = B * NH: one thread owns all tiles of one head, so dq, dk and dv are written
without races or atomics. Extra memory per thread is O(Tq * hs) for the dq accumulators and
D, plus a few tiles.

The tiles have the forward's size, BLOCK_Q x BLOCK_K = 128 x 128. Measured reason (one
thread of a shared AMD EPYC Zen 4, float32, B * NH = 8, hs = 64): 63 ms at T = 1024 and
0.99 s at T = 4096 with 64 x 64 tiles, 56 ms and 0.84 s with 128 x 128.

NOTE: with fewer heads (BH) than threads, some threads stay idle; a split over key blocks
would need a reduction of dq across threads.

Shapes (BH = B * NH, hs_pad = hs rounded up to a multiple of 4):
    dout, q, q_far, out, dq, dq_far    (BH, Tq, hs)
    k, k_far, v, dk, dk_far, dv        (BH, Tk, hs)
    lse                                (BH, Tq)
    q tile, dout tile                  (BLOCK_Q, hs_pad);  their transposes (hs_pad, BLOCK_Q)
    k tile, v tile                     (BLOCK_K, hs_pad);  k^T tile (hs_pad, BLOCK_K)
    P, dS                              (BLOCK_Q, BLOCK_K); their transposes (BLOCK_K, BLOCK_Q)
"""

from __future__ import annotations

import math

import numpy as np

from ..threads import run_work_items
from .compile import jit
from .flash_forward import BLOCK_K, BLOCK_Q, tile_kind, tile_scores
from .tiles import exp_shifted, load_rows, load_rows_transposed, matmul_nt, round_up


@jit()
def transpose_into(tile, tile_t, n_rows, n_cols):
    """Copy tile[:n_rows, :n_cols]^T into tile_t[:n_cols, :n_rows]; zero tile_t's other columns."""
    for c in range(n_cols):
        for r in range(n_rows):
            tile_t[c, r] = tile[r, c]
        for r in range(n_rows, tile_t.shape[1]):
            tile_t[c, r] = 0.0


@jit()
def split_at_window(d_scores, d_far, n_rows, n_cols, i_first, j_first, window):
    """Move the entries with i - j >= window from d_scores into d_far (zeros elsewhere)."""
    for r in range(n_rows):
        for c in range(n_cols):
            if (i_first + r) - (j_first + c) >= window:
                d_far[r, c] = d_scores[r, c]
                d_scores[r, c] = 0.0
            else:
                d_far[r, c] = 0.0


@jit()
def add_rows_times(d_scores, k_t, dq_tile, dq_acc, q0, n_rows, n_cols):
    """Add d_scores[:n_rows, :n_cols] @ k to dq_acc[q0:q0 + n_rows], through dq_tile."""
    hs_pad = dq_tile.shape[1]
    dq_tile[:, :] = 0.0
    matmul_nt(d_scores, k_t, dq_tile, n_rows, hs_pad, n_cols)
    for r in range(n_rows):
        for d in range(hs_pad):
            dq_acc[q0 + r, d] += dq_tile[r, d]


@jit(nogil=True)
def backward_heads(dout, q, k, v, out, lse, q_far, k_far, window, causal, q_start,
                   dq, dk, dv, dq_far, dk_far, first_head, stop_head):
    """Fill the gradients of heads first_head .. stop_head - 1; releases the GIL.

    Each head streams over key tiles and, inside, query tiles. The tiles are allocated once
    per call and reused for every head.
    """
    Tq, hs = q.shape[1], q.shape[2]
    Tk = k.shape[1]
    hs_pad = round_up(hs, 4)
    scale = 1.0 / math.sqrt(hs)
    dtype = q.dtype
    has_far = window >= 0

    q_tile = np.zeros((BLOCK_Q, hs_pad), dtype)
    q_far_tile = np.zeros((BLOCK_Q, hs_pad), dtype)
    q_t = np.zeros((hs_pad, BLOCK_Q), dtype)
    q_far_t = np.zeros((hs_pad, BLOCK_Q), dtype)
    dout_tile = np.zeros((BLOCK_Q, hs_pad), dtype)
    dout_t = np.zeros((hs_pad, BLOCK_Q), dtype)
    k_t = np.zeros((hs_pad, BLOCK_K), dtype)
    k_far_t = np.zeros((hs_pad, BLOCK_K), dtype)
    v_tile = np.zeros((BLOCK_K, hs_pad), dtype)
    probs = np.empty((BLOCK_Q, BLOCK_K), dtype)
    probs_t = np.empty((BLOCK_K, BLOCK_Q), dtype)
    far_scores = np.empty((BLOCK_Q, BLOCK_K), dtype)
    d_probs = np.empty((BLOCK_Q, BLOCK_K), dtype)
    d_far = np.empty((BLOCK_Q, BLOCK_K), dtype)
    d_t = np.empty((BLOCK_K, BLOCK_Q), dtype)
    dk_acc = np.empty((BLOCK_K, hs_pad), dtype)
    dk_far_acc = np.empty((BLOCK_K, hs_pad), dtype)
    dv_acc = np.empty((BLOCK_K, hs_pad), dtype)
    dq_tile = np.empty((BLOCK_Q, hs_pad), dtype)
    dq_acc = np.zeros((Tq, hs_pad), dtype)
    dq_far_acc = np.zeros((Tq, hs_pad), dtype)
    row_lse = np.empty(BLOCK_Q, dtype)
    D = np.empty(Tq, dtype)

    for bh in range(first_head, stop_head):
        dq_acc[:, :] = 0.0
        dq_far_acc[:, :] = 0.0

        # pass 0: D_i = dout_i . out_i for every query row
        for t in range(Tq):
            total = dtype.type(0.0)
            for d in range(hs):
                total += dout[bh, t, d] * out[bh, t, d]
            D[t] = total

        for j0 in range(0, Tk, BLOCK_K):
            n_keys = min(BLOCK_K, Tk - j0)
            n_cols = round_up(n_keys, 4)
            load_rows_transposed(k, bh, j0, n_keys, k_t, 1.0)
            load_rows(v, bh, j0, n_keys, v_tile, 1.0)
            if has_far:
                load_rows_transposed(k_far, bh, j0, n_keys, k_far_t, 1.0)
            dk_acc[:, :] = 0.0
            dk_far_acc[:, :] = 0.0
            dv_acc[:, :] = 0.0

            # under the causal mask, query rows before the tile's first key see none of its keys
            first_row = max(0, j0 - q_start) if causal else 0
            for q0 in range(first_row // BLOCK_Q * BLOCK_Q, Tq, BLOCK_Q):
                n_rows = min(BLOCK_Q, Tq - q0)
                i_first = q_start + q0
                i_last, j_last = i_first + n_rows - 1, j0 + n_cols - 1
                needs_near, needs_far = tile_kind(i_first, i_last, j0, j_last, window)
                key_end = min(Tk, i_first + n_rows) if causal else Tk

                # pass 1: recompute the scores, as in the forward, and P = exp(S - lse)
                load_rows(q, bh, q0, n_rows, q_tile, scale)
                if has_far:
                    load_rows(q_far, bh, q0, n_rows, q_far_tile, scale)
                tile_scores(q_tile, k_t, q_far_tile, k_far_t, probs, far_scores, n_rows, n_cols,
                            i_first, j0, key_end, window, causal)
                for r in range(n_rows):
                    row_lse[r] = lse[bh, q0 + r]
                exp_shifted(probs, n_rows, n_cols, row_lse)

                # pass 2: dv += P^T dout
                load_rows(dout, bh, q0, n_rows, dout_tile, 1.0)
                load_rows_transposed(dout, bh, q0, n_rows, dout_t, 1.0)
                transpose_into(probs, probs_t, n_rows, n_cols)
                matmul_nt(probs_t, dout_t, dv_acc, n_cols, hs_pad, BLOCK_Q)

                # pass 3: dP = dout v^T, then dS = P * (dP - D), kept in d_probs
                d_probs[:n_rows, :n_cols] = 0.0
                matmul_nt(dout_tile, v_tile, d_probs, n_rows, n_cols, hs)
                for r in range(n_rows):
                    D_r = D[q0 + r]
                    for c in range(n_cols):
                        d_probs[r, c] = probs[r, c] * (d_probs[r, c] - D_r)

                # pass 4: near entries feed dq and dk through k and q, far entries through the far
                # copies. A tile on the window boundary has both kinds.
                far_part = d_probs
                if needs_near and needs_far:
                    split_at_window(d_probs, d_far, n_rows, n_cols, i_first, j0, window)
                    far_part = d_far
                if needs_near:
                    add_rows_times(d_probs, k_t, dq_tile, dq_acc, q0, n_rows, n_cols)
                    transpose_into(d_probs, d_t, n_rows, n_cols)
                    load_rows_transposed(q, bh, q0, n_rows, q_t, scale)
                    matmul_nt(d_t, q_t, dk_acc, n_cols, hs_pad, BLOCK_Q)
                if needs_far:
                    add_rows_times(far_part, k_far_t, dq_tile, dq_far_acc, q0, n_rows, n_cols)
                    transpose_into(far_part, d_t, n_rows, n_cols)
                    load_rows_transposed(q_far, bh, q0, n_rows, q_far_t, scale)
                    matmul_nt(d_t, q_far_t, dk_far_acc, n_cols, hs_pad, BLOCK_Q)

            # pass 5: store this key tile's gradients
            for c in range(n_keys):
                for d in range(hs):
                    dk[bh, j0 + c, d] = dk_acc[c, d]
                    dv[bh, j0 + c, d] = dv_acc[c, d]
                    if has_far:
                        dk_far[bh, j0 + c, d] = dk_far_acc[c, d]

        # pass 6: dq = dS k / sqrt(hs); the 1 / sqrt(hs) of dk came in with the scaled q tiles
        for t in range(Tq):
            for d in range(hs):
                dq[bh, t, d] = dq_acc[t, d] * scale
                if has_far:
                    dq_far[bh, t, d] = dq_far_acc[t, d] * scale


def flash_attention_backward(dout, q, k, v, out, lse, q_far, k_far, window, causal, q_start,
                             dq, dk, dv, dq_far, dk_far):
    """Fill dq, dk, dv (and dq_far, dk_far when ``window >= 0``), one head per work item.

    The heads are shared among ``minitx.get_num_threads()`` threads.
    """
    args = (dout, q, k, v, out, lse, q_far, k_far, window, causal, q_start,
            dq, dk, dv, dq_far, dk_far)
    run_work_items(backward_heads, args, q.shape[0])
