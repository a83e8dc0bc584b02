"""Tile helpers shared by the blocked attention kernels: two matmul micro-kernels and tile loads.

The products in the blocked kernels have one of two forms, both reading their operands along
the contiguous last axis:

    matmul_nn:  C[:n_rows, :n_cols] += A[:n_rows, :inner] @ B[:inner, :n_cols]
    matmul_nt:  C[:n_rows, :n_cols] += A[:n_rows, :inner] @ B[:n_cols, :inner]^T

``matmul_nn`` vectorises along rows of B and C: each sweep adds four rank-1 terms to four
rows of C. The forward uses it (k^T tiles for q k^T, v tiles for P v), and so does the score
recomputation in the backward. ``matmul_nt`` computes a 2 x 4 block of C per step in eight
scalar accumulators, and with fast-math reassociation LLVM turns each of the eight dot
products into a vector reduction. The rest of the backward uses it.

Measured reasons, on one core of an AMD EPYC (Zen 4) with Numba 0.68 and float32, on a
shared machine (so within about 20 %). A repeated 32 x 64 by 64 x 64 product ran at 39
GFLOP/s as one dot product per output entry and at 60 GFLOP/s as ``matmul_nt``'s 2 x 4
blocks. With rows of C accumulated through memory one rank-1 term at a time it reached 26 to
32 GFLOP/s. A repeated 64 x 64 by 64 x 64 product, timed by CPU time, ran at 45 to 60 GFLOP/s
in ``matmul_nt``. ``matmul_nn`` reached 65 to 80 GFLOP/s when the sizes were compile-time
constants and about 45 GFLOP/s when they were not. Blocks of four rows by eight terms, or eight
rows by four, fell to 10 GFLOP/s, because LLVM then vectorised the loop over rows instead.

Tiles are padded so that ``n_cols`` (for ``matmul_nt``) and ``inner`` (for ``matmul_nn``) are
multiples of 4. Padding entries are zero, so they add nothing to any product.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from .compile import FASTMATH, jit


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
def matmul_nn(A, B, C, n_rows, n_cols, inner):
    """Add A[:n_rows, :inner] @ B[:inner, :n_cols] to C[:n_rows, :n_cols]; inner % 4 == 0.

    Shapes: A (>= n_rows, >= inner), B (>= inner, >= n_cols), C (>= n_rows, >= n_cols).
    The innermost loop runs along rows of B and C, which LLVM vectorises. Each sweep along
    a row of C adds four rank-1 terms to four rows at once, so C is loaded and stored once
    per 16 multiply-adds and each loaded vector of B serves four rows.
    """
    # pass 1: blocks of four rows of C, four columns of A per sweep
    n_block_rows = n_rows - n_rows % 4
    for r in range(0, n_block_rows, 4):
        for x in range(0, inner, 4):
            a00, a01, a02, a03 = A[r, x], A[r, x + 1], A[r, x + 2], A[r, x + 3]
            a10, a11, a12, a13 = A[r + 1, x], A[r + 1, x + 1], A[r + 1, x + 2], A[r + 1, x + 3]
            a20, a21, a22, a23 = A[r + 2, x], A[r + 2, x + 1], A[r + 2, x + 2], A[r + 2, x + 3]
            a30, a31, a32, a33 = A[r + 3, x], A[r + 3, x + 1], A[r + 3, x + 2], A[r + 3, x + 3]
            for c in range(n_cols):
                b0, b1, b2, b3 = B[x, c], B[x + 1, c], B[x + 2, c], B[x + 3, c]
                C[r, c] += a00 * b0 + a01 * b1 + a02 * b2 + a03 * b3
                C[r + 1, c] += a10 * b0 + a11 * b1 + a12 * b2 + a13 * b3
                C[r + 2, c] += a20 * b0 + a21 * b1 + a22 * b2 + a23 * b3
                C[r + 3, c] += a30 * b0 + a31 * b1 + a32 * b2 + a33 * b3

    # pass 2: the last n_rows % 4 rows, one at a time (a single decoded token, for example)
    for r in range(n_block_rows, n_rows):
        for x in range(0, inner, 4):
            a0, a1, a2, a3 = A[r, x], A[r, x + 1], A[r, x + 2], A[r, x + 3]
            for c in range(n_cols):
                C[r, c] += a0 * B[x, c] + a1 * B[x + 1, c] + a2 * B[x + 2, c] + a3 * B[x + 3, c]


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
def exp_reduced_float32(f, n):
    """Return exp(f) * 2^n in float32, for |f| <= ln(2) / 2 and an integer-valued n in -126..0.

    The Taylor series to degree 7 leaves a relative error of about 1e-8, below float32's
    rounding.
    2^n is built from its bits: exponent field n + 127, mantissa 0.
    """
    p = np.float32(1.0 / 5040.0)  # 1 / 7!
    p = p * f + np.float32(1.0 / 720.0)
    p = p * f + np.float32(1.0 / 120.0)
    p = p * f + np.float32(1.0 / 24.0)
    p = p * f + np.float32(1.0 / 6.0)
    p = p * f + np.float32(0.5)
    p = p * f + np.float32(1.0)
    p = p * f + np.float32(1.0)
    return p * np.int32((np.int32(n) + 127) << 23).view(np.float32)


@jit()
def exp_reduced_float64(f, n):
    """Return exp(f) * 2^n in float64, for |f| <= ln(2) / 2 and an integer-valued n in -126..0.

    The Taylor series to degree 12 leaves a relative error below 4e-16. 2^n is built from its
    bits: exponent field n + 1023, mantissa 0.
    """
    p = 1.0 / 479001600.0  # 1 / 12!
    p = p * f + 1.0 / 39916800.0
    p = p * f + 1.0 / 3628800.0
    p = p * f + 1.0 / 362880.0
    p = p * f + 1.0 / 40320.0
    p = p * f + 1.0 / 5040.0
    p = p * f + 1.0 / 720.0
    p = p * f + 1.0 / 120.0
    p = p * f + 1.0 / 24.0
    p = p * f + 1.0 / 6.0
    p = p * f + 0.5
    p = p * f + 1.0
    p = p * f + 1.0
    return p * np.int64((np.int64(n) + 1023) << 52).view(np.float64)


def exp_reduced(f, n):
    """Return exp(f) * 2^n in the precision of ``f``: the float32 or the float64 version.

    Compiled callers pick the version while typing (see the overload below), so each dtype
    gets its own polynomial degree. This Python body runs under NUMBA_DISABLE_JIT=1.
    """
    if isinstance(f, np.float32):
        return exp_reduced_float32(f, n)
    return exp_reduced_float64(f, n)


@overload(exp_reduced, jit_options=dict(fastmath=set(FASTMATH)))
def _exp_reduced_for_type(f, n):
    if f == types.float32:
        return lambda f, n: exp_reduced_float32(f, n)
    return lambda f, n: exp_reduced_float64(f, n)


@jit()
def exp_nonpositive(x):
    """Return exp(x) for x <= 0 in the precision of ``x``; 0 below EXP_MIN_ARGUMENT and for -inf.

    ``math.exp`` is a library call that LLVM cannot vectorise, so the exponential is written
    out: x = n ln 2 + f with integer n and |f| <= ln(2) / 2, then ``exp_reduced``. A table
    lookup for 2^n would stop the calling loop from vectorising, because of the gather.
    """
    t = type(x)  # keeps every constant in the input's precision
    clamped = max(x, t(EXP_MIN_ARGUMENT))
    n = np.floor(clamped * t(LOG2_E) + t(0.5))  # -126 <= n <= 0
    f = clamped - n * t(LN2_HI) - n * t(LN2_LO)
    return exp_reduced(f, n) if x >= t(EXP_MIN_ARGUMENT) else t(0.0)


@jit()
def exp_shifted(scores, n_rows, n_cols, shift):
    """Replace scores[r, c] by exp(scores[r, c] - shift[r]) for r < n_rows, c < n_cols.

    Requires scores[r, c] - shift[r] <= 0 (shift is the row max or the row's log-sum-exp).

    Measured reason for ``exp_nonpositive`` (one core of an AMD EPYC Zen 4, float32, repeated
    64 x 64 tiles, CPU time): 1.1 ns per entry with a degree-12 polynomial for both dtypes and
    2^n by binary powering, 0.2 ns with the degree-7 float32 polynomial and 2^n from exponent
    bits.
    """
    for r in range(n_rows):
        m = shift[r]
        for c in range(n_cols):
            scores[r, c] = exp_nonpositive(scores[r, c] - m)
