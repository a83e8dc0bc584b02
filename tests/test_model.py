"""TransformerLM: shapes, causality, swapping position encodings, and length limits."""

import numpy as np
import pytest

from conftest import assert_close
from minitx import ModelConfig, TransformerLM
from minitx.positions import RoPE, SelfExtend


def make_model(position="rope", dtype="float64", context_length=16, **overrides):
    config = ModelConfig(vocab_size=13, context_length=context_length, n_layer=2, n_head=3, n_embd=12,
                         position=position, dtype=dtype, **overrides)
    model = TransformerLM(config, seed=7)
    rng = np.random.default_rng(0)
    for _, param in model.named_parameters():  # larger weights make positions matter
        param[...] = rng.standard_normal(param.shape) * 0.4
    return model


@pytest.mark.parametrize("position", ["rope", "sinusoidal"])
def test_logits_shape_and_dtype(position):
    model = make_model(position, dtype="float32")
    tokens = np.random.default_rng(1).integers(0, 13, size=(2, 9))
    logits = model(tokens)
    assert logits.shape == (2, 9, 13)
    assert logits.dtype == np.float32


@pytest.mark.parametrize("position", ["rope", "sinusoidal", "self-extend"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_changing_later_tokens_leaves_earlier_logits_unchanged(position, backend):
    model = make_model(position, group_size=2, window=3).set_backend(backend)
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, 13, size=(2, 11))
    t = 5
    changed = tokens.copy()
    changed[:, t + 1 :] = (tokens[:, t + 1 :] + 1 + rng.integers(0, 11, size=(2, 5))) % 13
    before, after = model(tokens), model(changed)
    assert np.array_equal(before[:, : t + 1], after[:, : t + 1])
    assert not np.allclose(before[:, t + 1 :], after[:, t + 1 :])


def test_position_changes_the_output():
    tokens = np.random.default_rng(3).integers(0, 13, size=(1, 10))
    rope = make_model("rope")
    shuffled = np.concatenate([tokens[:, :-1][:, ::-1], tokens[:, -1:]], axis=1)
    # Same last token, earlier tokens reversed: attention without positions would give the same
    # last output, because it sums over keys without regard to their order.
    assert not np.allclose(rope(tokens)[:, -1], rope(shuffled)[:, -1])


def test_numba_and_numpy_backends_agree():
    model = make_model("rope")
    tokens = np.random.default_rng(4).integers(0, 13, size=(3, 14))
    numba_logits = model.set_backend("numba")(tokens)
    numpy_logits = model.set_backend("numpy")(tokens)
    assert_close(numba_logits, numpy_logits, rtol=1e-10, atol=1e-10)


def test_self_extend_with_group_one_equals_rope():
    model = make_model("rope")
    tokens = np.random.default_rng(5).integers(0, 13, size=(2, 16))
    extended = model.with_position(SelfExtend(4, group_size=1, window=3))
    assert_close(extended(tokens), model(tokens), rtol=0, atol=1e-12)


def test_self_extend_within_window_equals_rope():
    model = make_model("rope")
    tokens = np.random.default_rng(6).integers(0, 13, size=(2, 8))
    extended = model.with_position(SelfExtend(4, group_size=4, window=8))
    assert_close(extended(tokens), model(tokens), rtol=0, atol=1e-12)


def test_self_extend_changes_logits_beyond_window():
    model = make_model("rope")
    tokens = np.random.default_rng(6).integers(0, 13, size=(2, 16))
    extended = model.with_position(SelfExtend(4, group_size=4, window=4))
    assert_close(extended(tokens)[:, :4], model(tokens)[:, :4], rtol=0, atol=1e-12)
    assert not np.allclose(extended(tokens)[:, 4:], model(tokens)[:, 4:])


def test_with_position_copies_weights_and_keeps_original():
    model = make_model("rope")
    extended = model.with_position(SelfExtend(4, group_size=2, window=4))
    assert extended.config.position == "self-extend"
    assert model.config.position == "rope"
    for (name, a), (_, b) in zip(model.named_parameters(), extended.named_parameters()):
        assert np.array_equal(a, b), name
        assert a is not b


def test_converting_pairing_keeps_logits():
    model = make_model("rope")
    tokens = np.random.default_rng(8).integers(0, 13, size=(2, 12))
    half = model.with_position(RoPE(4, pairing="half"))
    assert half.config.pairing == "half"
    assert_close(half(tokens), model(tokens), rtol=1e-12, atol=1e-12)
    back = half.with_position(RoPE(4, pairing="interleaved"))
    for (name, a), (_, b) in zip(model.named_parameters(), back.named_parameters()):
        assert np.array_equal(a, b), name


def test_self_extend_on_sinusoidal_model_is_rejected():
    model = make_model("sinusoidal")
    with pytest.raises(ValueError, match="sinusoidal model has no rotations"):
        model.with_position(SelfExtend(4, group_size=2, window=4))


def test_with_position_rejects_wrong_head_dim():
    with pytest.raises(ValueError, match="head_dim=4"):
        make_model("rope").with_position(SelfExtend(6, group_size=2, window=4))


def test_input_longer_than_context_is_rejected_with_fix():
    model = make_model("rope", context_length=8)
    tokens = np.zeros((1, 9), dtype=int)
    with pytest.raises(ValueError, match=r"T=9 exceeds 8.*extrapolate=True"):
        model(tokens)
    assert model(tokens, extrapolate=True).shape == (1, 9, 13)


def test_self_extend_raises_the_length_limit():
    model = make_model("rope", context_length=8)
    extended = model.with_position(SelfExtend(4, group_size=3, window=4))
    assert extended.max_length() == 3 * (8 - 4 + 1)
    assert extended(np.zeros((1, 15), dtype=int)).shape == (1, 15, 13)
    with pytest.raises(ValueError, match="exceeds 15"):
        extended(np.zeros((1, 16), dtype=int))
