"""Position encodings: the invariants of sinusoidal, RoPE and Self-Extend."""

import numpy as np
import pytest

from conftest import assert_close
from minitx.positions import RoPE, SelfExtend, Sinusoidal, pairing_permutation

PAIRINGS = ["interleaved", "half"]


# ----------------------------------------------------------------------------- sinusoidal


def test_sinusoidal_table_matches_formula():
    dim, T = 10, 9
    table = Sinusoidal(dim).table(np.arange(T))
    for p in range(T):
        for m in range(dim // 2):
            angle = p / 10000.0 ** (2 * m / dim)
            assert table[p, 2 * m] == pytest.approx(np.sin(angle), abs=1e-15)
            assert table[p, 2 * m + 1] == pytest.approx(np.cos(angle), abs=1e-15)


def test_sinusoidal_dot_product_depends_only_on_offset():
    table = Sinusoidal(16).table(np.arange(60))
    gram = table @ table.T  # (60, 60)
    for offset in range(-20, 21):
        diagonal = np.diagonal(gram, offset=offset)
        assert np.ptp(diagonal) < 1e-12, f"offset {offset}: values spread by {np.ptp(diagonal)}"


def test_sinusoidal_shift_is_a_fixed_linear_map():
    table = Sinusoidal(12).table(np.arange(40))
    k = 5
    # Fit the map on the first rows, then check it on the rest.
    M, *_ = np.linalg.lstsq(table[:20], table[k : 20 + k], rcond=None)
    assert_close(table[20:35] @ M, table[20 + k : 35 + k], rtol=0, atol=1e-9, what="PE(p+k) = PE(p) M")


def test_sinusoidal_odd_dim_ends_with_a_sine():
    table = Sinusoidal(7).table(np.arange(5))
    assert table.shape == (5, 7)
    angle = np.arange(5) / 10000.0 ** (6 / 7)
    assert_close(table[:, 6], np.sin(angle), rtol=0, atol=1e-15, what="last column")


# ----------------------------------------------------------------------------- RoPE


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_rope_preserves_norms(rng, pairing):
    x = rng.standard_normal((2, 3, 7, 8))
    rotated = RoPE(8, pairing=pairing).rotate(x, np.arange(100, 107))
    assert_close(np.linalg.norm(rotated, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-13, atol=0, what="norms")


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_rope_position_zero_is_identity(rng, pairing):
    x = rng.standard_normal((5, 6))
    assert np.array_equal(RoPE(6, pairing=pairing).rotate(x, np.zeros(5, dtype=int)), x)


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_rope_score_depends_only_on_offset(rng, pairing):
    rope = RoPE(10, pairing=pairing)
    q, k = rng.standard_normal(10), rng.standard_normal(10)
    for offset in (0, 1, 5, 37):
        scores = []
        for i in (offset, offset + 3, offset + 250, offset + 4000):
            j = i - offset
            qi = rope.rotate(q[None], np.array([i]))[0]
            kj = rope.rotate(k[None], np.array([j]))[0]
            scores.append(qi @ kj)
        assert np.ptp(scores) < 1e-10, f"offset {offset}: scores {scores}"


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_rope_inverse_undoes_rotation(rng, pairing):
    rope = RoPE(12, pairing=pairing)
    x = rng.standard_normal((3, 9, 12))
    positions = np.arange(50, 59)
    assert_close(rope.rotate(rope.rotate(x, positions), positions, inverse=True), x, rtol=0, atol=1e-13)


def test_rope_pairings_agree_under_channel_permutation(rng):
    head_dim = 12
    perm = pairing_permutation(head_dim)
    assert list(perm) == [0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11]
    x = rng.standard_normal((2, 7, head_dim))
    positions = np.arange(3, 10)
    half = RoPE(head_dim, pairing="half").rotate(x[..., perm], positions)
    interleaved = RoPE(head_dim, pairing="interleaved").rotate(x, positions)[..., perm]
    assert_close(half, interleaved, rtol=0, atol=1e-14, what="half(x[perm]) vs interleaved(x)[perm]")


def test_rope_pairings_differ_without_permutation(rng):
    x = rng.standard_normal((7, 8))
    positions = np.arange(1, 8)
    assert not np.allclose(RoPE(8, pairing="half").rotate(x, positions), RoPE(8, pairing="interleaved").rotate(x, positions))


def test_rope_interleaved_rotates_adjacent_pairs():
    rope = RoPE(4, base=100.0, pairing="interleaved")
    x = np.array([[1.0, 0.0, 1.0, 0.0]])
    out = rope.rotate(x, np.array([3]))[0]
    theta = np.array([1.0, 100.0 ** (-0.5)])
    assert_close(out, [np.cos(3 * theta[0]), np.sin(3 * theta[0]), np.cos(3 * theta[1]), np.sin(3 * theta[1])], 0, 1e-15)


def test_rope_angles_exact_at_large_positions():
    rope = RoPE(8)
    positions = np.array([257, 2049, 100_001])
    assert rope.angles(positions).dtype == np.float64
    assert_close(rope.angles(positions)[:, 0], positions.astype(np.float64), rtol=0, atol=0)


def test_rope_float32_input_keeps_dtype(rng):
    x = rng.standard_normal((7, 8)).astype(np.float32)
    out = RoPE(8).rotate(x, np.arange(7))
    assert out.dtype == np.float32
    assert_close(out, RoPE(8).rotate(x.astype(np.float64), np.arange(7)), rtol=1e-6, atol=1e-6)


def test_rope_tables_follow_positions_and_dtype(rng):
    rope = RoPE(8)
    x = rng.standard_normal((2, 5, 8))
    first, second = np.arange(5), np.arange(3, 8)
    expected_first = RoPE(8).rotate(x, first)
    expected_second = RoPE(8).rotate(x, second)
    for _ in range(2):  # the second round reads the kept tables
        assert_close(rope.rotate(x, first), expected_first, 0, 0, what="first positions")
        assert_close(rope.rotate(x, second), expected_second, 0, 0, what="second positions")
    assert rope.rotate(x.astype(np.float32), first).dtype == np.float32
    assert rope.rotate(x, first).dtype == np.float64


def test_rope_table_count_is_bounded(rng):
    rope = RoPE(4)
    x = rng.standard_normal((3, 4))
    for start in range(3 * RoPE.MAX_TABLES):
        rope.rotate(x, np.arange(start, start + 3))
    assert len(rope._tables) <= RoPE.MAX_TABLES


def test_rope_rotates_strided_views(rng):
    qkv = rng.standard_normal((2, 5, 3, 8))  # (B, T, 3, hs): q, k, v interleaved in memory
    q = qkv[:, :, 0]  # (B, T, hs), not contiguous
    for pairing in PAIRINGS:
        out = RoPE(8, pairing=pairing).rotate(q, np.arange(5))
        assert_close(out, RoPE(8, pairing=pairing).rotate(q.copy(), np.arange(5)), 0, 0, what=pairing)
        assert out.flags.c_contiguous


# ----------------------------------------------------------------------------- Self-Extend


def test_self_extend_matrix_for_n10_g2_w4():
    d = SelfExtend(8, group_size=2, window=4).relative_positions(10)
    assert list(d[5, :6]) == [4, 4, 3, 2, 1, 0]
    assert list(d[9, :10]) == [6, 6, 5, 5, 4, 4, 3, 2, 1, 0]
    assert (d[np.triu_indices(10, k=1)] == -1).all(), "entries with j > i must hold the mask value -1"


def test_self_extend_matrix_matches_definition():
    for G, W in [(2, 4), (3, 5), (4, 3), (1, 6), (5, 10)]:
        d = SelfExtend(6, group_size=G, window=W).relative_positions(23)
        for i in range(23):
            for j in range(i + 1):
                expected = i - j if i - j < W else (i // G + W - W // G) - j // G
                assert d[i, j] == expected, f"G={G} W={W} i={i} j={j}"


def test_self_extend_group_size_one_is_rope(rng):
    se = SelfExtend(8, group_size=1, window=3)
    x = rng.standard_normal((2, 9, 8))
    positions = np.arange(9)
    near, far = se.rotate_queries(x, positions)
    assert np.array_equal(far, RoPE(8).rotate(x, positions))
    assert np.array_equal(near, far)
    d = se.relative_positions(15)
    i, j = np.tril_indices(15)
    assert np.array_equal(d[i, j], i - j)


def test_self_extend_short_input_is_rope():
    d = SelfExtend(8, group_size=4, window=6).relative_positions(6)
    i, j = np.tril_indices(6)
    assert np.array_equal(d[i, j], i - j)


def test_self_extend_regions_are_continuous_when_group_divides_window():
    d = SelfExtend(8, group_size=4, window=8).relative_positions(64)
    for i in range(8, 64):
        # The last neighbour entry is W - 1 and the first grouped one at most W.
        assert d[i, i - 8] in (7, 8), f"row {i}: first grouped position {d[i, i - 8]}"


@pytest.mark.parametrize("G, W, L", [(2, 4, 16), (3, 5, 20), (4, 8, 32), (5, 1024, 4096), (7, 3, 9), (2, 16, 16), (3, 20, 16)])
def test_self_extend_max_length_is_tight(G, W, L):
    se = SelfExtend(8, group_size=G, window=W)
    N = se.max_length(L)
    if L <= 64:
        assert se.relative_positions(N).max() < L, "max_length is too long"
        assert se.relative_positions(N + 1).max() >= L, "max_length is not the longest"
    if W < L and W % G == 0:
        assert N == (L - W) * G + W


def test_self_extend_paper_example_length():
    assert SelfExtend(8, group_size=5, window=1024).max_length(4096) == 16380


@pytest.mark.parametrize("L, length, W", [(128, 1024, 32), (16, 40, 5), (20, 20, 4), (9, 100, 2)])
def test_fit_group_size_is_smallest_sufficient(L, length, W):
    from minitx.positions import fit_group_size

    G = fit_group_size(L, length, W)
    assert SelfExtend(8, G, W).max_length(L) >= length
    if G > 1:
        assert SelfExtend(8, G - 1, W).max_length(L) < length


def test_fit_group_size_rejects_window_at_training_length():
    from minitx.positions import fit_group_size

    with pytest.raises(ValueError, match="must be below the training length 16"):
        fit_group_size(16, 64, 16)


def test_rope_tables_follow_a_changed_base():
    from minitx.positions import RoPE

    x = np.random.default_rng(0).standard_normal((1, 1, 5, 8))
    positions = np.arange(5)
    rope = RoPE(8)
    rope.rotate(x, positions)
    rope.base = 100.0
    np.testing.assert_allclose(rope.rotate(x, positions), RoPE(8, base=100.0).rotate(x, positions), rtol=0, atol=0)
