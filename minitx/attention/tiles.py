"""Tile helpers shared by the blocked attention kernels: one matmul micro-kernel and tile loads.

Every matrix product in the blocked forward and backward is written as

    C[:n_rows, :n_cols] += A[:n_rows, :inner] @ B[:n_cols, :inner]^T

so both operands are read along their contiguous last axis, and the kernels pass transposed
tiles (for example V^T) where a product needs them. ``matmul_nt`` computes a 2 x 4 block of C
per step in eight scalar accumulators. With fast-math reassociation LLVM turns each of the
eight dot products into a vector reduction, and the block reuses every loaded row of A four
times and every row of B twice.

Measured reason for the 2 x 4 block, on one core of an AMD EPYC (Zen 4) with Numba 0.68: a
repeated 32 x 64 by 64 x 64 float32 product ran at 39 GFLOP/s as one dot product per output
entry and at 60 GFLOP/s as 2 x 4 blocks. Accumulating rows of C through memory reached only
26 to 32 GFLOP/s. The machine was shared, so these are estimates within about 20 %.

Tiles are padded so that ``n_cols`` is a multiple of 4. Padding entries are zero, so they add
nothing to any product.
"""

from __future__ import annotations

import numpy as np

from .compile import jit


@jit()
def round_up(n, multiple):
    """Return the smallest multiple of ``multiple`` that is >= n."""
    return (n + multiple - 1) // multiple * multiple


@jit()
def matmul_nt(A, B, C, n_rows, n_cols, inner):
    """Add A[:n_rows, :inner] @ B[:n_cols, :inner]^T to C[:n_rows, :n_cols]; n_cols % 4 == 0.

    Shapes: A (>= n_rows, >= inner), B (>= n_cols, >= inner), C (>= n_rows, >= n_cols).
    """
    # pass 1: pairs of rows, four columns at a time
    for r in range(0, n_rows - 1, 2):
        for c in range(0, n_cols, 4):
            c00, c01, c02, c03 = C[r, c], C[r, c + 1], C[r, c + 2], C[r, c + 3]
            c10, c11, c12, c13 = C[r + 1, c], C[r + 1, c + 1], C[r + 1, c + 2], C[r + 1, c + 3]
            for x in range(inner):
                a0 = A[r, x]
                a1 = A[r + 1, x]
                b0, b1, b2, b3 = B[c, x], B[c + 1, x], B[c + 2, x], B[c + 3, x]
                c00 += a0 * b0
                c01 += a0 * b1
                c02 += a0 * b2
                c03 += a0 * b3
                c10 += a1 * b0
                c11 += a1 * b1
                c12 += a1 * b2
                c13 += a1 * b3
            C[r, c], C[r, c + 1], C[r, c + 2], C[r, c + 3] = c00, c01, c02, c03
            C[r + 1, c], C[r + 1, c + 1], C[r + 1, c + 2], C[r + 1, c + 3] = c10, c11, c12, c13

    # pass 2: the last row when n_rows is odd (a single decoded token, for example)
    if n_rows % 2 == 1:
        r = n_rows - 1
        for c in range(0, n_cols, 4):
            c00, c01, c02, c03 = C[r, c], C[r, c + 1], C[r, c + 2], C[r, c + 3]
            for x in range(inner):
                a0 = A[r, x]
                c00 += a0 * B[c, x]
                c01 += a0 * B[c + 1, x]
                c02 += a0 * B[c + 2, x]
                c03 += a0 * B[c + 3, x]
            C[r, c], C[r, c + 1], C[r, c + 2], C[r, c + 3] = c00, c01, c02, c03


@jit()
def load_rows(x, bh, start, n, tile, scale):
    """Copy x[bh, start:start + n, :] * scale into tile[:n, :hs]; zero the rows n and beyond.

    Shapes: x (BH, T, hs); tile (rows, hs_pad) with rows >= n. Columns hs..hs_pad stay as
    they are, so they must be zeroed once when the tile is allocated.
    """
    hs = x.shape[2]
    for r in range(n):
        for d in range(hs):
            tile[r, d] = x[bh, start + r, d] * scale
    for r in range(n, tile.shape[0]):
        for d in range(hs):
            tile[r, d] = 0.0


@jit()
def load_rows_transposed(x, bh, start, n, tile, scale):
    """Copy x[bh, start:start + n, :]^T * scale into tile[:hs, :n]; zero the columns n and beyond.

    Shapes: x (BH, T, hs); tile (hs_pad, cols) with cols >= n.
    """
    hs = x.shape[2]
    for d in range(hs):
        for c in range(n):
            tile[d, c] = x[bh, start + c, d] * scale
        for c in range(n, tile.shape[1]):
            tile[d, c] = 0.0


#: ln 2 split in two (Cody and Waite 1980): LN2_HI has few enough significant bits that
#: n * LN2_HI is exact for |n| <= 128, and LN2_LO = ln 2 - LN2_HI carries the rest.
LN2_HI = 0.693145751953125
LN2_LO = 1.4286068203094172321e-06
LOG2_E = 1.4426950408889634074
#: Arguments below this give exp(x) < 2^-125 and are returned as exactly 0, as for -inf.
EXP_MIN_ARGUMENT = -87.0


@jit()
def exp_shifted(scores, n_rows, n_cols, shift):
    """Replace scores[r, c] by exp(scores[r, c] - shift[r]) for r < n_rows, c < n_cols.

    Requires scores[r, c] - shift[r] <= 0 (shift is the row max or the row's log-sum-exp).
    ``math.exp`` is a library call that LLVM cannot vectorise, so the exponential is written
    out: x = n ln 2 + f with integer n and |f| <= ln(2) / 2, exp(f) from its Taylor series to
    degree 12 (relative error below 2e-16), and 2^n by binary powering over the bits of -n.
    A table lookup for 2^n would be shorter, but a gather stops the loop from vectorising.
    """
    t = scores.dtype.type  # keeps every constant in the input's precision
    one = t(1.0)
    for r in range(n_rows):
        m = shift[r]
        for c in range(n_cols):
            x = scores[r, c] - m
            clamped = max(x, t(EXP_MIN_ARGUMENT))
            n = np.floor(clamped * t(LOG2_E) + t(0.5))  # -126 <= n <= 0
            f = clamped - n * t(LN2_HI) - n * t(LN2_LO)

            # exp(f) = sum_k f^k / k!, in Horner form
            p = t(1.0 / 479001600.0)  # 1 / 12!
            p = p * f + t(1.0 / 39916800.0)
            p = p * f + t(1.0 / 3628800.0)
            p = p * f + t(1.0 / 362880.0)
            p = p * f + t(1.0 / 40320.0)
            p = p * f + t(1.0 / 5040.0)
            p = p * f + t(1.0 / 720.0)
            p = p * f + t(1.0 / 120.0)
            p = p * f + t(1.0 / 24.0)
            p = p * f + t(1.0 / 6.0)
            p = p * f + t(0.5)
            p = p * f + one
            p = p * f + one

            # 2^n = product of 2^-(2^b) over the set bits b of -n
            k = int(-n)
            p *= t(2.0**-1) if k & 1 else one
            p *= t(2.0**-2) if k & 2 else one
            p *= t(2.0**-4) if k & 4 else one
            p *= t(2.0**-8) if k & 8 else one
            p *= t(2.0**-16) if k & 16 else one
            p *= t(2.0**-32) if k & 32 else one
            p *= t(2.0**-64) if k & 64 else one
            scores[r, c] = p if x >= t(EXP_MIN_ARGUMENT) else t(0.0)
