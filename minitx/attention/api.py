"""Public attention functions: validate in Python, apply the position encoding, dispatch.

``attend`` and ``attention_weights`` take un-rotated q, k, v of shape (B, NH, T, hs) and an
optional rotary position encoding (RoPE or Self-Extend). Absolute encodings (sinusoidal) act
at the model's input, so passing one here is rejected rather than silently ignored.

``forward`` and ``backward`` are the lower-level pair the model uses: they take already
rotated copies and a query offset, so the same code serves training, evaluation and decoding
against a KV cache.
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import check_float_array
from ..positions.base import PositionEncoding
from ..threads import kernel_region
from . import reference

BACKENDS = ("numpy", "numba")

#: Up to this many query rows, ``forward`` runs the row kernel instead of the blocked one. A
#: decoded token has one row, and the blocked kernel would copy every key and value tile for
#: it: one token against 1024 cached keys (B * NH = 8, hs = 64, one thread) took 0.20 ms in
#: the row kernel and 0.63 ms in the blocked one.
ROW_KERNEL_MAX_TQ = 4


def _check_backend(backend) -> str:
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {BACKENDS}, got {backend!r}. "
            "'numpy' is the readable reference, 'numba' the compiled loops."
        )
    return backend


def _check_qkv(q, k, v=None):
    """Validate shapes and dtypes of (B, NH, Tq, hs) q and (B, NH, Tk, hs) k, v."""
    q = check_float_array("q", q, ndim=4)
    k = check_float_array("k", k, ndim=4)
    if v is not None:
        v = check_float_array("v", v, ndim=4)
    arrays = {"q": q, "k": k} if v is None else {"q": q, "k": k, "v": v}
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) > 1:
        raise TypeError(
            f"q, k and v must share one dtype, got {dtypes}. Cast them all to float32 or float64."
        )
    if q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must agree on (B, NH, _, hs), got q {q.shape} and k {k.shape}. "
            "Both are laid out (B, NH, T, hs)."
        )
    if v is not None and v.shape != k.shape:
        raise ValueError(f"v must have the shape of k, got v {v.shape} and k {k.shape}.")
    if q.shape[2] > k.shape[2]:
        raise ValueError(
            f"q has T={q.shape[2]} rows but k has only T={k.shape[2]}. q may be shorter than k "
            "(its rows are then the last positions, as in decoding), never longer."
        )
    for name, a in arrays.items():
        if 0 in a.shape:
            raise ValueError(f"{name} has an empty dimension, shape {a.shape}.")
    return q, k, v


def _check_causal(causal) -> bool:
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be True or False, got {causal!r}.")
    return bool(causal)


def _check_score_range(q, k):
    """Reject inputs whose scores could overflow the dtype and turn the softmax into NaN.

    A rotation moves at most sqrt(2) * max|x| into any channel of a pair, so every score
    q_i . k_j / sqrt(hs) is at most 2 * sqrt(hs) * max|q| * max|k| under any position encoding.
    """
    hs = q.shape[-1]
    q_max, k_max = float(np.max(np.abs(q))), float(np.max(np.abs(k)))
    bound = 2.0 * math.sqrt(hs) * q_max * k_max  # Python floats: overflow gives inf, not a warning
    limit = float(np.finfo(q.dtype).max) / 16  # headroom for the partial sums inside the kernels
    if not bound < limit:
        fix = "Scale them down." if q.dtype == np.float64 else "Scale them down, or use float64."
        raise ValueError(
            f"q and k are too large (max |q| = {q_max:.3g}, max |k| = {k_max:.3g}): their scores "
            f"can reach {bound:.3g}, beyond the {limit:.3g} that {q.dtype} keeps finite. {fix}"
        )


def _check_position(position, causal):
    if position is None:
        return None
    if not isinstance(position, PositionEncoding):
        raise TypeError(
            f"position must be None or a minitx.positions encoding (RoPE, SelfExtend), "
            f"got {type(position).__name__}."
        )
    if position.kind != "rotary":
        raise ValueError(
            f"{type(position).__name__} is an absolute encoding: it is added to the token "
            "embeddings at the model's input and has no effect inside attention. Pass "
            "position=None here, or use it as ModelConfig(position='sinusoidal')."
        )
    if position.window is not None and not causal:
        raise ValueError(
            f"{type(position).__name__} is defined for causal attention only, got causal=False."
        )
    return position


def _rotate(q, k, position):
    """Return (q_near, k_near, q_far, k_far, window, q_start) for the core functions."""
    Tq, Tk = q.shape[2], k.shape[2]
    q_start = Tk - Tq
    if position is None:
        return q, k, None, None, None, q_start
    if q.shape[-1] != position.head_dim:
        raise ValueError(
            f"q and k have hs={q.shape[-1]}, but the position encoding was built for "
            f"head_dim={position.head_dim}. Build it with head_dim={q.shape[-1]}."
        )
    q_near, q_far = position.rotate_queries(q, np.arange(q_start, Tk))
    k_near, k_far = position.rotate_keys(k, np.arange(Tk))
    return q_near, k_near, q_far, k_far, position.window, q_start


def _flatten(a, T):
    """Return ``a`` (B, NH, T, hs) as a C-contiguous (B * NH, T, hs) array for the kernels."""
    B, NH, _, hs = a.shape
    return np.ascontiguousarray(a).reshape(B * NH, T, hs)  # (B, NH, T, hs) -> (BH, T, hs)


def forward(q, k, v, q_far=None, k_far=None, window=None, causal=True, q_start=0, backend="numba"):
    """Return (out, lse) for already rotated inputs; see ``reference.attention_forward``.

    backend="numba" runs the blocked streaming kernel ``flash_forward.flash_attention_forward``,
    or ``kernels.attention_forward_rows`` for at most ROW_KERNEL_MAX_TQ query rows.
    """
    if backend == "numpy":
        return reference.attention_forward(q, k, v, q_far, k_far, window, causal, q_start)

    from . import kernels  # imported here: backend="numpy" compiles nothing
    from .flash_forward import flash_attention_forward

    B, NH, Tq, hs = q.shape
    Tk = k.shape[2]
    q3, k3, v3 = _flatten(q, Tq), _flatten(k, Tk), _flatten(v, Tk)
    if window is None:
        q_far3, k_far3, window_arg = q3, k3, -1  # the far arrays are not read when window < 0
    else:
        q_far3, k_far3, window_arg = _flatten(q_far, Tq), _flatten(k_far, Tk), int(window)
    out = np.empty_like(q3)
    lse = np.empty((B * NH, Tq), dtype=q.dtype)
    kernel = kernels.attention_forward_rows if Tq <= ROW_KERNEL_MAX_TQ else flash_attention_forward
    with kernel_region():
        kernel(q3, k3, v3, q_far3, k_far3, window_arg, bool(causal), int(q_start), out, lse)
    return out.reshape(B, NH, Tq, hs), lse.reshape(B, NH, Tq)


def backward(dout, q, k, v, out, lse, q_far=None, k_far=None, window=None, causal=True, q_start=0,
             backend="numba"):
    """Return (dq, dk, dv, dq_far, dk_far); see ``reference.attention_backward``.

    backend="numba" runs ``flash_backward.flash_attention_backward``, which recomputes the
    probabilities tile by tile from ``lse`` and never allocates a (Tq, Tk) matrix.
    """
    if backend == "numpy":
        return reference.attention_backward(dout, q, k, v, out, lse, q_far, k_far, window, causal, q_start)

    from .flash_backward import flash_attention_backward

    B, NH, Tq, hs = q.shape
    Tk = k.shape[2]
    q3, k3, v3 = _flatten(q, Tq), _flatten(k, Tk), _flatten(v, Tk)
    dout3, out3 = _flatten(dout, Tq), _flatten(out, Tq)
    lse2 = np.ascontiguousarray(lse).reshape(B * NH, Tq)  # (B, NH, Tq) -> (BH, Tq)
    dq, dk, dv = np.empty_like(q3), np.empty_like(k3), np.empty_like(v3)
    if window is None:
        q_far3, k_far3, window_arg = q3, k3, -1
        dq_far, dk_far = dq, dk  # placeholders: the kernel writes no far gradient when window < 0
    else:
        q_far3, k_far3, window_arg = _flatten(q_far, Tq), _flatten(k_far, Tk), int(window)
        dq_far, dk_far = np.empty_like(q3), np.empty_like(k3)
    with kernel_region():
        flash_attention_backward(
            dout3, q3, k3, v3, out3, lse2, q_far3, k_far3, window_arg, bool(causal), int(q_start),
            dq, dk, dv, dq_far, dk_far,
        )
    shape_q, shape_k = (B, NH, Tq, hs), (B, NH, Tk, hs)
    if window is None:
        return dq.reshape(shape_q), dk.reshape(shape_k), dv.reshape(shape_k), None, None
    return (dq.reshape(shape_q), dk.reshape(shape_k), dv.reshape(shape_k),
            dq_far.reshape(shape_q), dk_far.reshape(shape_k))


def attend(q, k, v, position=None, causal=True, backend="numba"):
    """Return softmax(q k^T / sqrt(hs)) v, shape (B, NH, Tq, hs), with positions applied.

    q is (B, NH, Tq, hs); k and v are (B, NH, Tk, hs) with Tq <= Tk. When Tq < Tk the query
    rows are the last Tq positions, as when decoding against a cache. float32 and float64 are
    supported; the output has the input's dtype. ``position`` is None, a RoPE or a SelfExtend.
    """
    _check_backend(backend)
    q, k, v = _check_qkv(q, k, v)
    causal = _check_causal(causal)
    position = _check_position(position, causal)
    _check_score_range(q, k)
    q_near, k_near, q_far, k_far, window, q_start = _rotate(q, k, position)
    if not causal:
        q_start = 0
    out, _ = forward(q_near, k_near, v, q_far, k_far, window, causal, q_start, backend=backend)
    return out


def attention_weights(q, k, position=None, causal=True):
    """Return the (B, NH, Tq, Tk) attention probabilities; masked entries are exactly 0."""
    q, k, _ = _check_qkv(q, k)
    causal = _check_causal(causal)
    position = _check_position(position, causal)
    _check_score_range(q, k)
    q_near, k_near, q_far, k_far, window, q_start = _rotate(q, k, position)
    if not causal:
        q_start = 0
    return reference.attention_probs(q_near, k_near, q_far, k_far, window, causal, q_start)


__all__ = ["BACKENDS", "attend", "attention_weights", "backward", "forward"]
