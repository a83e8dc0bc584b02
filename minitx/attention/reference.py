"""Scaled dot-product attention in vectorised NumPy: the readable reference.

Vaswani et al. 2017, eq. 1: softmax(q k^T / sqrt(hs)) v, with a causal mask. Every compiled
kernel in ``kernels.py`` is tested against these functions.

The functions take q, k, v already rotated by their position encoding. With a Self-Extend
``window`` they take two rotated copies of q and k (Jin et al. 2024, section 3): the score for
query i and key j is q_near[i] . k_near[j] where i - j < window and q_far[i] . k_far[j]
elsewhere; the causal mask and one softmax per row follow.

Query row t sits at absolute position ``q_start + t``, and key column j at position j, so
the same code serves a full forward (q_start = 0) and decoding against a KV cache
(q_start = number of cached tokens).

The backward recomputes the probabilities from the saved log-sum-exp of each row, as in
FlashAttention-2 (Dao 2023, algorithm 2), so forward and backward share one contract with the
compiled kernels. This reference materialises the (Tq, Tk) score matrix; it is for checking,
not for long inputs.

Shapes: q (B, NH, Tq, hs); k, v (B, NH, Tk, hs); out (B, NH, Tq, hs); lse (B, NH, Tq).
"""

from __future__ import annotations

import math

import numpy as np


def _scores(q, k, q_far, k_far, window, causal, q_start):
    """Return the masked, scaled (B, NH, Tq, Tk) scores; masked entries are -inf."""
    Tq, Tk, hs = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(hs)  # a Python float keeps float32 inputs in float32
    scores = (q @ np.swapaxes(k, -1, -2)) * scale  # (B, NH, Tq, hs) @ (B, NH, hs, Tk) -> (B, NH, Tq, Tk)

    i = q_start + np.arange(Tq)[:, None]  # (Tq, 1) query positions
    j = np.arange(Tk)[None, :]  # (1, Tk) key positions
    if window is not None:
        far = (q_far @ np.swapaxes(k_far, -1, -2)) * scale  # (B, NH, Tq, Tk)
        scores = np.where(i - j < window, scores, far)
    if causal:
        scores = np.where(j <= i, scores, -np.inf)
    return scores


def attention_forward(q, k, v, q_far=None, k_far=None, window=None, causal=True, q_start=0):
    """Return (out, lse): the attention output and each row's log-sum-exp of the scores."""
    scores = _scores(q, k, q_far, k_far, window, causal, q_start)

    row_max = scores.max(axis=-1, keepdims=True)  # (B, NH, Tq, 1), finite: key 0 is never masked
    probs = np.exp(scores - row_max)
    row_sum = probs.sum(axis=-1, keepdims=True)
    out = (probs / row_sum) @ v  # (B, NH, Tq, Tk) @ (B, NH, Tk, hs) -> (B, NH, Tq, hs)
    lse = (row_max + np.log(row_sum))[..., 0]  # (B, NH, Tq)
    return out.astype(q.dtype, copy=False), lse.astype(q.dtype, copy=False)


def attention_probs(q, k, q_far=None, k_far=None, window=None, causal=True, q_start=0):
    """Return the (B, NH, Tq, Tk) attention probabilities; masked entries are exactly 0."""
    scores = _scores(q, k, q_far, k_far, window, causal, q_start)
    row_max = scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores - row_max)
    return probs / probs.sum(axis=-1, keepdims=True)


def attention_backward(dout, q, k, v, out, lse, q_far=None, k_far=None, window=None, causal=True, q_start=0):
    """Return (dq, dk, dv, dq_far, dk_far); the far gradients are None without a window.

    The softmax backward uses D_t = sum_c dout[t, c] * out[t, c], which equals
    sum_j P[t, j] * dP[t, j] and avoids a second (Tq, Tk) reduction.
    """
    hs = q.shape[-1]
    scale = 1.0 / math.sqrt(hs)  # a Python float keeps float32 inputs in float32
    scores = _scores(q, k, q_far, k_far, window, causal, q_start)
    probs = np.exp(scores - lse[..., None])  # (B, NH, Tq, Tk), recomputed from the saved lse

    dv = np.swapaxes(probs, -1, -2) @ dout  # (B, NH, Tk, Tq) @ (B, NH, Tq, hs) -> (B, NH, Tk, hs)
    dprobs = dout @ np.swapaxes(v, -1, -2)  # (B, NH, Tq, hs) @ (B, NH, hs, Tk) -> (B, NH, Tq, Tk)
    D = (dout * out).sum(axis=-1, keepdims=True)  # (B, NH, Tq, 1)
    dscores = probs * (dprobs - D) * scale

    if window is None:
        dq = dscores @ k  # (B, NH, Tq, Tk) @ (B, NH, Tk, hs) -> (B, NH, Tq, hs)
        dk = np.swapaxes(dscores, -1, -2) @ q  # (B, NH, Tk, Tq) @ (B, NH, Tq, hs) -> (B, NH, Tk, hs)
        return dq, dk, dv, None, None

    Tq, Tk = q.shape[-2], k.shape[-2]
    i = q_start + np.arange(Tq)[:, None]
    j = np.arange(Tk)[None, :]
    near = i - j < window  # (Tq, Tk)
    d_near = np.where(near, dscores, 0.0)
    d_far = np.where(near, 0.0, dscores)
    dq = d_near @ k
    dk = np.swapaxes(d_near, -1, -2) @ q
    dq_far = d_far @ k_far
    dk_far = np.swapaxes(d_far, -1, -2) @ q_far
    return dq, dk, dv, dq_far, dk_far
