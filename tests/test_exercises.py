"""The exercise checkers: minitx's own functions pass them, and typical wrong versions are caught."""

import numpy as np
import pytest

import minitx
from minitx.exercises import check_attention, check_rope, check_self_extend, check_sinusoidal, check_softmax
from minitx.positions import RoPE, SelfExtend, Sinusoidal

# ----------------------------------------------------------------------------- implementations


def library_rotate(x, positions):
    return RoPE(x.shape[-1]).rotate(x, positions)


def rotate_with_wrong_frequencies(x, positions):
    # theta_m = base^(-m / hs) instead of base^(-2m / hs): every property but the angles holds.
    hs = x.shape[-1]
    theta = 10000.0 ** (-np.arange(hs // 2) / hs)
    angles = np.asarray(positions)[:, None] * theta  # (T, hs/2)
    out = np.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * np.cos(angles) - x[..., 1::2] * np.sin(angles)
    out[..., 1::2] = x[..., 0::2] * np.sin(angles) + x[..., 1::2] * np.cos(angles)
    return out


def rotate_half_split(x, positions):
    # Correct angles on the other pairing, so the per-pair angle check fails.
    return RoPE(x.shape[-1], pairing="half").rotate(x, positions)


def add_positions(x, positions):
    return x + np.asarray(positions)[:, None] * 0.01


def softmax_correct(x):
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_without_max(x):
    with np.errstate(over="ignore", invalid="ignore"):
        return np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)


def softmax_over_wrong_axis(x):
    shifted = x - np.max(x, axis=0, keepdims=True)
    return np.exp(shifted) / np.exp(shifted).sum(axis=0, keepdims=True)


def attend_without_mask(q, k, v):
    return minitx.attend(q, k, v, causal=False)


def attend_without_scale(q, k, v):
    return minitx.attend(q * np.sqrt(q.shape[-1]), k, v)


def attend_transposed_heads(q, k, v):
    return minitx.attend(q, k, v).swapaxes(1, 2)


def table_with_swapped_columns(T, dim):
    table = Sinusoidal(dim).table(np.arange(T))
    return table[:, [1, 0] + list(range(2, dim))]


def table_with_wrong_base(T, dim):
    return Sinusoidal(dim, base=1000.0).table(np.arange(T))


def library_relative_positions(T, group_size, window):
    return SelfExtend(2, group_size, window).relative_positions(T)


def relative_positions_with_float_shift(T, group_size, window):
    # W - W / G truncated after the subtraction: differs from W - W // G when G does not divide W.
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    far = (i // group_size + int(window - window / group_size)) - j // group_size
    d = np.where(i - j < window, i - j, far)
    return np.where(j <= i, d, -1)


def relative_positions_without_mask(T, group_size, window):
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    far = (i // group_size + window - window // group_size) - j // group_size
    return np.where(i - j < window, i - j, far)


def relative_positions_grouping_all(T, group_size, window):
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    d = (i // group_size + window - window // group_size) - j // group_size
    return np.where(j <= i, d, -1)


# ----------------------------------------------------------------------------- tests


def test_checkers_pass_library_functions(capsys):
    assert len(check_rope(library_rotate)) == 5
    assert len(check_attention(lambda q, k, v: minitx.attend(q, k, v))) == 5
    assert len(check_attention(lambda q, k, v: minitx.attend(q, k, v, backend="numpy"))) == 5
    assert len(check_sinusoidal(lambda T, dim: Sinusoidal(dim).table(np.arange(T)))) == 3
    assert len(check_softmax(softmax_correct)) == 5
    assert len(check_self_extend(library_relative_positions)) == 4
    assert capsys.readouterr().out.count("ok: ") == 27


@pytest.mark.parametrize(
    "wrong, failed_check",
    [
        (rotate_with_wrong_frequencies, "rope pair m turns by p * theta_m"),
        (rotate_half_split, "rope pair m turns by p * theta_m"),
        (add_positions, "rope preserves norms"),
    ],
)
def test_check_rope_catches_wrong_rotation(wrong, failed_check):
    with pytest.raises(AssertionError) as error:
        check_rope(wrong)
    assert str(error.value).startswith(f"failed: {failed_check}.")


@pytest.mark.parametrize(
    "wrong, failed_check",
    [(softmax_without_max, "softmax survives large logits"),
     (softmax_over_wrong_axis, "softmax matches exp(x) / sum(exp(x))")],
)
def test_check_softmax_catches_wrong_softmax(wrong, failed_check):
    with pytest.raises(AssertionError) as error:
        check_softmax(wrong)
    assert str(error.value).startswith(f"failed: {failed_check}.")


@pytest.mark.parametrize(
    "wrong, failed_check",
    [(attend_without_mask, "attention matches the reference"),
     (attend_without_scale, "attention matches the reference"),
     (attend_transposed_heads, "attention keeps the (B, NH, T, hs) shape")],
)
def test_check_attention_catches_wrong_attention(wrong, failed_check):
    with pytest.raises(AssertionError) as error:
        check_attention(wrong)
    assert str(error.value).startswith(f"failed: {failed_check}.")


@pytest.mark.parametrize("wrong", [table_with_swapped_columns, table_with_wrong_base])
def test_check_sinusoidal_catches_wrong_table(wrong):
    with pytest.raises(AssertionError) as error:
        check_sinusoidal(wrong)
    assert str(error.value).startswith("failed: sinusoidal table matches the formula.")


@pytest.mark.parametrize(
    "wrong, failed_check",
    [(relative_positions_with_float_shift, "self-extend matches d(i, j) with integer shift"),
     (relative_positions_without_mask, "self-extend masks future keys"),
     (relative_positions_grouping_all, "self-extend matches the worked example")],
)
def test_check_self_extend_catches_wrong_map(wrong, failed_check):
    with pytest.raises(AssertionError) as error:
        check_self_extend(wrong)
    assert str(error.value).startswith(f"failed: {failed_check}.")


def test_check_rope_accepts_relabelled_pairing():
    # Half-split RoPE wrapped in the channel permutation is the interleaved rotation itself.
    def rotate_then_reorder(x, positions):
        from minitx.positions import pairing_permutation

        hs = x.shape[-1]
        inverse = np.argsort(pairing_permutation(hs))
        rotated = RoPE(hs, pairing="half").rotate(x[..., pairing_permutation(hs)], positions)
        return rotated[..., inverse]

    assert len(check_rope(rotate_then_reorder)) == 5


def test_checker_failure_shows_expected_and_got():
    with pytest.raises(AssertionError) as error:
        check_sinusoidal(table_with_wrong_base)
    assert "expected" in str(error.value)
    assert "got" in str(error.value)


def test_checker_names_the_property_when_the_function_crashes():
    from minitx.exercises import check_sinusoidal

    def crashes_on_odd_dim(T, dim):
        if dim % 2:
            raise ValueError("odd dim")
        return minitx.Sinusoidal(dim).table(np.arange(T))

    with pytest.raises(AssertionError, match=r"failed: .*raised ValueError: odd dim"):
        check_sinusoidal(crashes_on_odd_dim)
