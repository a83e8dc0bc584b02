"""Attention: the compiled kernel equals the NumPy reference, causality, and the Self-Extend merge."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import assert_close
from minitx import attend, attention_weights
from minitx.attention import reference
from minitx.positions import RoPE, SelfExtend

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-5}


def qkv(rng, B=2, NH=3, T=7, hs=8, dtype=np.float64, Tq=None):
    q = rng.standard_normal((B, NH, Tq or T, hs)).astype(dtype)
    k = rng.standard_normal((B, NH, T, hs)).astype(dtype)
    v = rng.standard_normal((B, NH, T, hs)).astype(dtype)
    return q, k, v


def make_position(kind, hs):
    if kind == "none":
        return None
    if kind == "rope":
        return RoPE(hs)
    if kind == "rope-half":
        return RoPE(hs, pairing="half")
    return SelfExtend(hs, group_size=3, window=4)


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 3),
    NH=st.integers(1, 3),
    T=st.integers(1, 40),
    half_hs=st.integers(1, 9),
    dtype=st.sampled_from([np.float32, np.float64]),
    kind=st.sampled_from(["none", "rope", "rope-half", "self-extend"]),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_numba_equals_numpy(B, NH, T, half_hs, dtype, kind, causal, seed):
    rng = np.random.default_rng(seed)
    hs = 2 * half_hs
    position = make_position(kind, hs)
    if position is not None and position.window is not None:
        causal = True
    q, k, v = qkv(rng, B, NH, T, hs, dtype)
    expected = attend(q, k, v, position, causal=causal, backend="numpy")
    got = attend(q, k, v, position, causal=causal, backend="numba")
    assert got.dtype == dtype
    tol = TOLERANCE[dtype]
    assert_close(got, expected, rtol=tol, atol=tol, what=f"{kind} {dtype.__name__}")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_attend_accepts_non_contiguous_inputs(rng, backend):
    base = rng.standard_normal((2, 7, 3, 8))  # (B, T, NH, hs): transposing gives a strided view
    q, k, v = (base.transpose(0, 2, 1, 3) * s for s in (1.0, 0.5, 2.0))
    q = q[..., ::1]
    strided = base.transpose(0, 2, 1, 3)
    assert not strided.flags.c_contiguous
    got = attend(strided, strided, strided, RoPE(8), backend=backend)
    expected = attend(*(np.ascontiguousarray(strided),) * 3, RoPE(8), backend="numpy")
    assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_attend_matches_explicit_softmax(rng, backend):
    q, k, v = qkv(rng, 2, 3, 7, 8)
    scores = np.einsum("bhtc,bhsc->bhts", q, k) / math.sqrt(8)
    scores[..., np.triu_indices(7, k=1)[0], np.triu_indices(7, k=1)[1]] = -np.inf
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    assert_close(attend(q, k, v, backend=backend), probs @ v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("kind", ["none", "rope", "self-extend"])
def test_outputs_before_t_ignore_later_tokens(rng, backend, kind):
    q, k, v = qkv(rng, 2, 3, 11, 8)
    position = make_position(kind, 8)
    before = attend(q, k, v, position, backend=backend)
    t = 6
    q2, k2, v2 = q.copy(), k.copy(), v.copy()
    for array in (q2, k2, v2):
        array[:, :, t + 1 :] = rng.standard_normal(array[:, :, t + 1 :].shape)
    after = attend(q2, k2, v2, position, backend=backend)
    assert np.array_equal(before[:, :, : t + 1], after[:, :, : t + 1])
    assert not np.allclose(before[:, :, t + 1 :], after[:, :, t + 1 :])


def test_attention_weights_rows_sum_to_one_and_mask_is_zero(rng):
    q, k, _ = qkv(rng, 2, 3, 9, 6)
    probs = attention_weights(q, k, SelfExtend(6, 2, 3))
    assert probs.shape == (2, 3, 9, 9)
    assert_close(probs.sum(-1), np.ones((2, 3, 9)), rtol=0, atol=1e-12)
    i, j = np.triu_indices(9, k=1)
    assert (probs[..., i, j] == 0).all()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("G, W", [(2, 4), (3, 5), (4, 2), (1, 3)])
def test_self_extend_equals_single_softmax_over_remapped_positions(rng, backend, G, W):
    """Independent reference: rotate q_i by d(i, j) against the unrotated k_j, one softmax per row.

    RoPE scores depend only on the position difference, so rotating q alone by the effective
    relative position d(i, j) gives the score Self-Extend assigns to (i, j).
    """
    B, NH, T, hs = 2, 3, 13, 6
    q, k, v = qkv(rng, B, NH, T, hs)
    se = SelfExtend(hs, group_size=G, window=W)
    d = se.relative_positions(T)
    rope = RoPE(hs)
    scores = np.full((B, NH, T, T), -np.inf)
    for i in range(T):
        for j in range(i + 1):
            qi = rope.rotate(q[:, :, i : i + 1], np.array([d[i, j]]))[:, :, 0]  # (B, NH, hs)
            scores[:, :, i, j] = (qi * k[:, :, j]).sum(-1) / math.sqrt(hs)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    assert_close(attend(q, k, v, se, backend=backend), probs @ v, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_self_extend_group_one_equals_rope(rng, backend):
    q, k, v = qkv(rng, 2, 3, 17, 8)
    assert_close(attend(q, k, v, SelfExtend(8, 1, 5), backend=backend), attend(q, k, v, RoPE(8), backend=backend), 0, 1e-13)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_self_extend_short_input_equals_rope(rng, backend):
    q, k, v = qkv(rng, 2, 3, 6, 8)
    got = attend(q, k, v, SelfExtend(8, 4, 6), backend=backend)
    assert_close(got, attend(q, k, v, RoPE(8), backend=backend), 0, 1e-13)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("kind", ["none", "rope", "self-extend"])
def test_shorter_queries_are_the_last_rows(rng, backend, kind):
    q, k, v = qkv(rng, 2, 3, 12, 8)
    position = make_position(kind, 8)
    full = attend(q, k, v, position, backend=backend)
    tail = attend(q[:, :, -4:], k, v, position, backend=backend)
    assert_close(tail, full[:, :, -4:], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("window", [None, 3])
def test_reference_backward_matches_finite_differences(rng, window):
    from conftest import numerical_gradient

    B, NH, Tq, Tk, hs = 1, 2, 4, 6, 3
    q, k, v = (rng.standard_normal((B, NH, T, hs)) for T in (Tq, Tk, Tk))
    q_far, k_far = rng.standard_normal(q.shape), rng.standard_normal(k.shape)
    dout = rng.standard_normal((B, NH, Tq, hs))
    args = dict(window=window, causal=True, q_start=Tk - Tq)
    if window is not None:
        args.update(q_far=q_far, k_far=k_far)

    def loss():
        return float((reference.attention_forward(q, k, v, **args)[0] * dout).sum())

    out, lse = reference.attention_forward(q, k, v, **args)
    dq, dk, dv, dq_far, dk_far = reference.attention_backward(dout, q, k, v, out, lse, **args)
    for name, array, grad in [("q", q, dq), ("k", k, dk), ("v", v, dv)] + (
        [("q_far", q_far, dq_far), ("k_far", k_far, dk_far)] if window is not None else []
    ):
        assert_close(grad, numerical_gradient(loss, array), rtol=1e-6, atol=1e-8, what=f"d{name}")
