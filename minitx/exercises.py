"""Checkers for the lesson exercises: the spec tests of minitx, run on a student's function.

Each ``check_*`` function takes a function written by a student, runs the same properties the
test suite demands of minitx, and raises ``AssertionError`` naming the first property that fails
with the expected and the obtained values. On success it prints one line per property and
returns their names. The test suite runs every checker on minitx's own functions (which must
pass) and on deliberately wrong versions (which must be caught).

Signatures a student implements (B, NH, T, hs are batch, heads, sequence length, head width):

- ``softmax(x)``: softmax over the last axis of any float array; ``-inf`` entries give 0.
- ``attend(q, k, v)``: causal softmax(q k^T / sqrt(hs)) v for (B, NH, T, hs) arrays.
- ``table(T, dim)``: the (T, dim) sinusoidal table of Vaswani et al. 2017, section 3.5.
- ``rotate(x, positions)``: RoPE (Su et al. 2021) with interleaved pairs (2m, 2m + 1) and
  base 10000, for x (..., T, hs) and integer positions (T,).
- ``relative_positions(T, group_size, window)``: Self-Extend's (T, T) effective relative
  positions d(i, j) (Jin et al. 2024, section 3), query on rows, -1 where j > i.
"""

from __future__ import annotations

import numpy as np

from .attention import reference
from .positions import RoPE, SelfExtend, Sinusoidal, pairing_permutation


def _assert_close(name: str, got, expected, atol: float = 1e-9) -> None:
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        raise AssertionError(f"{name}: expected shape {expected.shape}, got {got.shape}.")
    error = np.abs(got - expected)
    error = np.where(np.isnan(error), np.inf, error)
    if error.size and error.max() > atol:
        worst = np.unravel_index(np.argmax(error), error.shape)
        raise AssertionError(
            f"{name}: at index {tuple(int(n) for n in worst)} expected {expected[worst]:.6g}, "
            f"got {got[worst]:.6g} (largest difference {error.max():.3g}, tolerance {atol:g})."
        )


def _run(checks) -> list[str]:
    """Run (name, check) pairs in order; stop at the first failure, naming the property."""
    passed = []
    for name, check in checks:
        try:
            check()
        except AssertionError as error:
            raise AssertionError(f"failed: {name}. {error}") from None
        except NotImplementedError:
            raise  # an exercise stub that is not written yet; the lessons report it themselves
        except Exception as error:
            raise AssertionError(
                f"failed: {name}. The function raised {type(error).__name__}: {error}"
            ) from error
        print(f"ok: {name}")
        passed.append(name)
    return passed


# ----------------------------------------------------------------------------- softmax


def check_softmax(softmax) -> list[str]:
    """Check ``softmax(x)`` over the last axis: sums, shift invariance, no overflow, masking."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5))  # (B, NH, T) with distinct sizes

    def matches_definition():
        expected = np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)
        _assert_close("softmax(x) = exp(x) / sum exp(x)", softmax(x), expected)

    def rows_sum_to_one():
        _assert_close("each row sums to 1", np.sum(softmax(x), axis=-1), np.ones((2, 3)))

    def shift_invariant():
        _assert_close("softmax(x + 100) == softmax(x)", softmax(x + 100.0), softmax(x))

    def large_logits_stay_finite():
        big = np.array([[1000.0, 999.0, -1000.0]])
        expected = np.array([[1.0, np.exp(-1.0), 0.0]]) / (1 + np.exp(-1.0))
        _assert_close("softmax of logits near 1000 (subtract the row max first)", softmax(big), expected)

    def masked_entries_are_zero():
        masked = np.array([[0.5, -np.inf, 1.5, -np.inf]])
        probs = softmax(masked)
        _assert_close("-inf logits get probability 0", np.asarray(probs)[:, [1, 3]], np.zeros((1, 2)), atol=0)

    return _run([
        ("softmax matches exp(x) / sum(exp(x))", matches_definition),
        ("softmax rows sum to one", rows_sum_to_one),
        ("softmax is shift invariant", shift_invariant),
        ("softmax survives large logits", large_logits_stay_finite),
        ("softmax gives masked entries zero", masked_entries_are_zero),
    ])


# ----------------------------------------------------------------------------- attention


def check_attention(attend) -> list[str]:
    """Check causal ``attend(q, k, v)`` on (B, NH, T, hs) inputs against the NumPy reference."""
    rng = np.random.default_rng(1)
    B, NH, T, hs = 2, 3, 7, 8  # distinct sizes, so a swapped axis cannot pass
    q, k, v = (rng.standard_normal((B, NH, T, hs)) for _ in range(3))

    def keeps_shape():
        out = np.asarray(attend(q, k, v))
        if out.shape != (B, NH, T, hs):
            raise AssertionError(f"output shape: expected (B, NH, T, hs) = {(B, NH, T, hs)}, got {out.shape}.")

    def matches_reference():
        expected, _ = reference.attention_forward(q, k, v, causal=True)
        _assert_close("attend(q, k, v) against softmax(q k^T / sqrt(hs)) v with a causal mask",
                      attend(q, k, v), expected)

    def is_causal():
        later = T - 3  # change keys and values from this position on
        k2, v2 = k.copy(), v.copy()
        k2[:, :, later:] = rng.standard_normal((B, NH, T - later, hs))
        v2[:, :, later:] = rng.standard_normal((B, NH, T - later, hs))
        _assert_close(f"rows before position {later} ignore keys and values at {later} and later",
                      np.asarray(attend(q, k2, v2))[:, :, :later], np.asarray(attend(q, k, v))[:, :, :later])

    def first_row_copies_first_value():
        _assert_close("query 0 can only see key 0, so its output is v[0]",
                      np.asarray(attend(q, k, v))[:, :, 0], v[:, :, 0])

    def uses_the_scale():
        expected, _ = reference.attention_forward(3 * q, k, v, causal=True)
        _assert_close("scores are divided by sqrt(hs) (tested with q scaled by 3)", attend(3 * q, k, v), expected)

    return _run([
        ("attention keeps the (B, NH, T, hs) shape", keeps_shape),
        ("attention matches the reference", matches_reference),
        ("attention is causal", is_causal),
        ("attention row 0 is v[0]", first_row_copies_first_value),
        ("attention divides scores by sqrt(hs)", uses_the_scale),
    ])


# ----------------------------------------------------------------------------- sinusoidal


def check_sinusoidal(table) -> list[str]:
    """Check ``table(T, dim)``: the formula, offset-only dot products, odd widths."""
    T, dim = 40, 16

    def matches_formula():
        _assert_close("PE[p, 2m] = sin(p / 10000^(2m/dim)), PE[p, 2m+1] = cos(...)", table(T, dim),
                      Sinusoidal(dim).table(np.arange(T)), atol=1e-12)

    def dot_depends_on_offset():
        pe = np.asarray(table(T, dim), dtype=np.float64)
        gram = pe @ pe.T  # (T, T)
        for offset in range(-10, 11):
            diagonal = np.diagonal(gram, offset=offset)
            _assert_close(f"PE(p) . PE(p + {offset}) is the same for every p", diagonal,
                          np.full_like(diagonal, diagonal[0]), atol=1e-10)

    def odd_dim():
        _assert_close("an odd dim ends with a sine column", table(6, 7), Sinusoidal(7).table(np.arange(6)), atol=1e-12)

    return _run([
        ("sinusoidal table matches the formula", matches_formula),
        ("sinusoidal dot product depends only on offset", dot_depends_on_offset),
        ("sinusoidal table supports an odd dim", odd_dim),
    ])


# ----------------------------------------------------------------------------- RoPE


def check_rope(rotate) -> list[str]:
    """Check ``rotate(x, positions)`` (interleaved RoPE, base 10000) against the RoPE properties."""
    rng = np.random.default_rng(2)
    hs = 8
    x = rng.standard_normal((2, 3, 7, hs))  # (B, NH, T, hs)
    positions = np.array([0, 1, 2, 5, 11, 100, 4000])

    def keeps_norm():
        got = np.linalg.norm(np.asarray(rotate(x, positions)), axis=-1)
        _assert_close("|rotate(x)| == |x| for every vector", got, np.linalg.norm(x, axis=-1))

    def position_zero_is_identity():
        zeros = np.zeros(7, dtype=np.int64)
        _assert_close("rotate(x, 0) == x", rotate(x, zeros), x, atol=0)

    def score_depends_on_offset():
        q, k = rng.standard_normal((1, hs)), rng.standard_normal((1, hs))
        for offset in (0, 1, 5, 37):
            scores = []
            for i in (offset, offset + 3, offset + 250, offset + 3000):
                qi = np.asarray(rotate(q, np.array([i])))[0]
                kj = np.asarray(rotate(k, np.array([i - offset])))[0]
                scores.append(qi @ kj)
            _assert_close(f"q_i . k_j with i - j = {offset} is the same for every i", scores,
                          np.full(4, scores[0]), atol=1e-9)

    def matches_angles():
        # A single pair per test: x = e_(2m) at position p must land on (cos, sin) of p * theta_m.
        theta = 10000.0 ** (-2.0 * np.arange(hs // 2) / hs)
        for m in range(hs // 2):
            unit = np.zeros((1, hs))
            unit[0, 2 * m] = 1.0
            expected = np.zeros((1, hs))
            expected[0, 2 * m], expected[0, 2 * m + 1] = np.cos(7 * theta[m]), np.sin(7 * theta[m])
            _assert_close(f"pair m={m} (channels {2 * m}, {2 * m + 1}) turns by 7 * theta_{m} at position 7",
                          rotate(unit, np.array([7])), expected)

    def pairing_permutation_holds():
        perm = pairing_permutation(hs)
        half = RoPE(hs, pairing="half").rotate(x[..., perm], positions)
        _assert_close("rotate(x)[..., perm] == half-split RoPE of x[..., perm]",
                      np.asarray(rotate(x, positions))[..., perm], half)

    return _run([
        ("rope preserves norms", keeps_norm),
        ("rope position 0 is the identity", position_zero_is_identity),
        ("rope score depends only on offset", score_depends_on_offset),
        ("rope pair m turns by p * theta_m", matches_angles),
        ("rope pairings differ by a permutation", pairing_permutation_holds),
    ])


# ----------------------------------------------------------------------------- Self-Extend


def check_self_extend(relative_positions) -> list[str]:
    """Check ``relative_positions(T, group_size, window)`` against Self-Extend's d(i, j)."""

    def matches_worked_example():
        d = np.asarray(relative_positions(10, 2, 4))
        _assert_close("row i=5 for T=10, G=2, W=4", d[5, :6], [4, 4, 3, 2, 1, 0], atol=0)
        _assert_close("row i=9 for T=10, G=2, W=4", d[9, :10], [6, 6, 5, 5, 4, 4, 3, 2, 1, 0], atol=0)

    def matches_definition():
        # G = 3 does not divide W = 4, so a float shift W - W / G would show up here.
        for T, G, W in ((12, 3, 4), (17, 4, 8), (9, 5, 2)):
            expected = SelfExtend(2, G, W).relative_positions(T)
            _assert_close(f"d(i, j) for T={T}, G={G}, W={W}", relative_positions(T, G, W), expected, atol=0)

    def group_size_one_is_rope():
        T = 11
        i, j = np.arange(T)[:, None], np.arange(T)[None, :]
        plain = np.where(j <= i, i - j, -1)
        _assert_close("G = 1 gives plain relative positions i - j", relative_positions(T, 1, 3), plain, atol=0)

    def masks_the_future():
        d = np.asarray(relative_positions(8, 2, 3))
        upper = np.triu(np.ones((8, 8), dtype=bool), k=1)
        _assert_close("entries with j > i are -1", d[upper], np.full(int(upper.sum()), -1), atol=0)

    return _run([
        ("self-extend matches the worked example", matches_worked_example),
        ("self-extend masks future keys", masks_the_future),
        ("self-extend matches d(i, j) with integer shift", matches_definition),
        ("self-extend with G = 1 is plain RoPE", group_size_one_is_rope),
    ])


__all__ = ["check_attention", "check_rope", "check_self_extend", "check_sinusoidal", "check_softmax"]
