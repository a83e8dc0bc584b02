"""Generation with a KV cache equals recomputing the full forward at every step."""

import numpy as np
import pytest

from conftest import assert_close
from minitx import ModelConfig, TransformerLM, generate
from minitx.positions import SelfExtend

POSITIONS = {
    "rope": {},
    "sinusoidal": {},
    "self-extend": {"group_size": 2, "window": 4},
    "self-extend-uneven": {"group_size": 3, "window": 5},  # G does not divide W
}


def make_model(kind, dtype="float64"):
    position = "self-extend" if kind.startswith("self-extend") else kind
    config = ModelConfig(vocab_size=17, context_length=12, n_layer=2, n_head=2, n_embd=8,
                         position=position, dtype=dtype, **POSITIONS[kind])
    model = TransformerLM(config, seed=11)
    rng = np.random.default_rng(1)
    for _, param in model.named_parameters():
        param[...] = rng.standard_normal(param.shape) * 0.5
    return model


@pytest.mark.parametrize("kind", list(POSITIONS))
@pytest.mark.parametrize("batch", [1, 3])
def test_cached_greedy_equals_recompute(kind, batch):
    model = make_model(kind)
    prompt = np.random.default_rng(2).integers(0, 17, size=(batch, 5))
    new = 15 if kind.startswith("self-extend") else 7  # Self-Extend goes past context_length 12
    cached = generate(model, prompt, new, temperature=0, use_cache=True)
    recomputed = generate(model, prompt, new, temperature=0, use_cache=False)
    assert cached.shape == (batch, 5 + new)
    assert np.array_equal(cached[:, :5], prompt)
    assert np.array_equal(cached, recomputed)


@pytest.mark.parametrize("kind", list(POSITIONS))
def test_decode_logits_equal_full_forward(kind):
    model = make_model(kind)
    tokens = np.random.default_rng(3).integers(0, 17, size=(2, 12))
    full = model(tokens)
    cache = model.new_cache(2, 12)
    pieces = [model.forward_cached(tokens[:, :7], cache)]  # prefill
    for t in range(7, 12):  # one token at a time
        pieces.append(model.forward_cached(tokens[:, t : t + 1], cache))
    assert_close(np.concatenate(pieces, axis=1), full, rtol=1e-11, atol=1e-11)


def test_sampling_is_repeatable_with_seed():
    model = make_model("rope", dtype="float32")
    prompt = np.array([1, 2, 3])
    a = generate(model, prompt, 8, temperature=1.0, top_k=5, seed=42)
    b = generate(model, prompt, 8, temperature=1.0, top_k=5, seed=42)
    assert a.shape == (11,)
    assert np.array_equal(a, b)


def test_top_k_one_is_greedy():
    model = make_model("rope")
    prompt = np.array([[4, 5, 6]])
    assert np.array_equal(generate(model, prompt, 6, temperature=1.0, top_k=1, seed=0), generate(model, prompt, 6, temperature=0))


def test_generation_past_supported_length_is_rejected():
    model = make_model("rope")
    with pytest.raises(ValueError, match="exceeds 12"):
        generate(model, np.array([1, 2, 3]), 10, temperature=0)
    assert generate(model, np.array([1, 2, 3]), 10, temperature=0, extrapolate=True).shape == (13,)


def test_self_extend_generates_past_training_length():
    model = make_model("rope").with_position(SelfExtend(4, group_size=3, window=4))
    out = generate(model, np.arange(10) % 17, 15, temperature=0)
    assert out.shape == (25,)
    assert model.max_length() >= 25
