"""Bad input is rejected in Python, before any compiled code, with a message naming the fix."""

import numpy as np
import pytest

import minitx
from minitx import ModelConfig, TransformerLM, attend, attention_weights, generate
from minitx.positions import RoPE, SelfExtend, Sinusoidal


def good(rng, shape=(2, 3, 7, 8), dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda q: (q[0], q, q), ValueError, "must have 4 dimensions"),
        (lambda q: (q, q[:, :2], q[:, :2]), ValueError, r"q and k must agree on \(B, NH, _, hs\)"),
        (lambda q: (q, q, q[..., :4]), ValueError, "v must have the shape of k"),
        (lambda q: (q, q[:, :, :3], q[:, :, :3]), ValueError, "never longer"),
        (lambda q: (q.astype(np.int64), q, q), TypeError, "dtype int64.*astype"),
        (lambda q: (q, q.astype(np.float32), q), TypeError, "share one dtype"),
        (lambda q: (q.tolist(), q, q), TypeError, "must be a NumPy array"),
        (lambda q: (np.where(q > 1, np.nan, q), q, q), ValueError, "non-finite"),
        (lambda q: (q, np.where(q > 1, np.inf, q), q), ValueError, "non-finite"),
    ],
)
def test_attend_rejects_bad_arrays(rng, make, error, message):
    q, k, v = make(good(rng))
    for backend in ("numpy", "numba"):
        with pytest.raises(error, match=message):
            attend(q, k, v, backend=backend)


def test_attend_rejects_unknown_backend(rng):
    q = good(rng)
    with pytest.raises(ValueError, match="backend must be one of"):
        attend(q, q, q, backend="torch")


def test_attend_rejects_sinusoidal_with_fix(rng):
    q = good(rng)
    with pytest.raises(ValueError, match="absolute encoding.*position=None"):
        attend(q, q, q, Sinusoidal(8))


def test_attend_rejects_wrong_head_dim(rng):
    q = good(rng)
    with pytest.raises(ValueError, match="head_dim=6"):
        attend(q, q, q, RoPE(6))


def test_attend_rejects_non_position_object(rng):
    q = good(rng)
    with pytest.raises(TypeError, match="position must be None or"):
        attend(q, q, q, position="rope")


def test_self_extend_rejects_non_causal(rng):
    q = good(rng)
    with pytest.raises(ValueError, match="causal attention only"):
        attention_weights(q, q, SelfExtend(8, 2, 4), causal=False)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: RoPE(7), "head_dim must be even"),
        (lambda: RoPE(8, pairing="adjacent"), "pairing must be one of"),
        (lambda: RoPE(8, base=0), "base must be a finite number > 0"),
        (lambda: SelfExtend(8, group_size=0, window=4), "group_size must be >= 1"),
        (lambda: SelfExtend(8, group_size=2, window=0), "window must be >= 1"),
        (lambda: SelfExtend(8, group_size=2.5, window=4), "group_size must be an integer"),
        (lambda: SelfExtend(9, group_size=2, window=4), "head_dim must be even"),
        (lambda: Sinusoidal(0), "dim must be >= 1"),
    ],
)
def test_position_constructors_reject_bad_settings(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_rope_rejects_float_positions(rng):
    with pytest.raises(TypeError, match="integer token positions"):
        RoPE(8).rotate(good(rng, (7, 8)), np.arange(7) * 1.0)


def test_rope_rejects_wrong_number_of_positions(rng):
    with pytest.raises(ValueError, match="one position per token"):
        RoPE(8).rotate(good(rng, (7, 8)), np.arange(6))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"position": "alibi"}, "Unknown position encoding 'alibi'. Valid names are sinusoidal, rope, self-extend"),
        ({"n_embd": 10, "n_head": 3}, "not divisible by n_head=3"),
        ({"n_embd": 6, "n_head": 2}, "head_dim must be even"),
        ({"context_length": 0}, "context_length must be >= 1"),
        ({"dtype": "float16"}, "dtype must be one of"),
        ({"norm": "batchnorm"}, "norm must be one of"),
    ],
)
def test_model_config_rejects_bad_settings(fields, message):
    base = dict(vocab_size=5, context_length=8, n_layer=1, n_head=2, n_embd=8)
    with pytest.raises((ValueError, TypeError), match=message):
        ModelConfig(**{**base, **fields})


def test_model_rejects_bad_tokens():
    model = TransformerLM(ModelConfig(vocab_size=5, context_length=8, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(ValueError, match=r"token ids in \[0, 9\].*0..4"):
        model(np.array([[0, 9]]))
    with pytest.raises(TypeError, match="integer token ids"):
        model(np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"shape \(B, T\).*tokens\[None, :\]"):
        model(np.array([0, 1]))


def test_generate_rejects_bad_settings():
    model = TransformerLM(ModelConfig(vocab_size=5, context_length=8, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(ValueError, match=r"temperature \(0 is greedy\) must be a finite number >= 0"):
        generate(model, np.array([1]), 3, temperature=-1)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        generate(model, np.array([1]), 3, top_k=0)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        generate(model, np.array([1]), -2)


def test_no_nan_from_extreme_but_finite_scores(rng):
    q = good(rng) * 1e3
    for backend in ("numpy", "numba"):
        out = attend(q, q, q, RoPE(8), backend=backend)
        assert np.isfinite(out).all()


def test_public_names_exist():
    for name in ("attend", "attention_weights", "ModelConfig", "TransformerLM", "generate", "positions"):
        assert hasattr(minitx, name), name


def test_attend_rejects_masked_arrays(rng):
    q = good(rng)
    with pytest.raises(TypeError, match="masked array"):
        attend(np.ma.masked_invalid(q), q, q)


def test_attention_weights_rejects_non_bool_causal(rng):
    q = good(rng)
    for causal in (None, 0, "no"):
        with pytest.raises(TypeError, match="causal must be True or False"):
            attention_weights(q, q, causal=causal)


@pytest.mark.parametrize("scale, dtype", [(1e154, np.float64), (2e19, np.float32)])
def test_scores_that_would_overflow_are_rejected(rng, scale, dtype):
    q = (good(rng) * scale).astype(dtype)
    v = good(rng).astype(dtype)
    with pytest.raises(ValueError, match="too large"):
        attend(q, q, v)
    with pytest.raises(ValueError, match="too large"):
        attention_weights(q, q)


def test_cache_of_another_model_is_rejected():
    small = TransformerLM(ModelConfig(vocab_size=5, context_length=8, n_layer=1, n_head=2, n_embd=8))
    deeper = TransformerLM(ModelConfig(vocab_size=5, context_length=8, n_layer=2, n_head=2, n_embd=8))
    with pytest.raises(ValueError, match="cache was not made for this model"):
        deeper.forward_cached(np.array([[1, 2]]), small.new_cache(1, 8))
    extended = deeper.with_position(SelfExtend(4, 2, 2))
    with pytest.raises(ValueError, match="cache was not made for this model"):
        extended.forward_cached(np.array([[1, 2]]), deeper.new_cache(1, 8))


def test_top_k_keeps_exactly_k_tokens_on_ties():
    model = TransformerLM(ModelConfig(vocab_size=11, context_length=64, n_layer=1, n_head=2, n_embd=8))
    for _, param in model.named_parameters():
        param[...] = 0.0  # every logit ties
    out = generate(model, np.array([1]), 60, temperature=1.0, top_k=2, seed=0)
    assert set(out[1:].tolist()) <= {0, 1}


def test_tiny_temperature_acts_greedy_without_nan():
    model = TransformerLM(ModelConfig(vocab_size=11, context_length=16, n_layer=1, n_head=2, n_embd=8), seed=1)
    prompt = np.array([3, 4])
    assert np.array_equal(generate(model, prompt, 5, temperature=1e-300, seed=0), generate(model, prompt, 5, temperature=0))


def test_generate_rejects_empty_prompt():
    model = TransformerLM(ModelConfig(vocab_size=5, context_length=8, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(ValueError, match="prompt is empty"):
        generate(model, [], 3)


def test_positions_beyond_exact_float_range_are_rejected():
    with pytest.raises(ValueError, match=r"<= 2\*\*53"):
        RoPE(8).angles(np.array([2**63], dtype=np.uint64))


def test_numpy_scalars_in_configs_become_python_numbers():
    from minitx.train import TrainConfig

    config = ModelConfig(vocab_size=np.int64(5), context_length=np.int32(8), n_layer=1, n_head=2, n_embd=8, base=np.float32(500))
    assert type(config.vocab_size) is int
    assert type(config.base) is float
    assert '"vocab_size": 5' in config.to_json()
    train_config = TrainConfig(steps=np.int64(3), learning_rate=np.float32(0.01))
    assert type(train_config.steps) is int
    assert type(train_config.learning_rate) is float


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"weight_decay": float("nan")}, "weight_decay must be a finite number >= 0"),
        ({"grad_clip": -1.0}, "grad_clip must be a finite number >= 0"),
        ({"learning_rate": 1e-4, "min_learning_rate": 1e-3}, "above learning_rate"),
        ({"steps": 0}, "steps must be >= 1"),
    ],
)
def test_train_config_rejects_bad_settings(fields, message):
    from minitx.train import TrainConfig

    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)


def test_training_checks_both_splits_before_the_first_step():
    from minitx.train import TrainConfig, train

    model = TransformerLM(ModelConfig(vocab_size=5, context_length=8, n_layer=1, n_head=2, n_embd=8))
    before = {name: array.copy() for name, array in model.named_parameters()}
    with pytest.raises(ValueError, match="validation split has 4 tokens"):
        train(model, np.zeros(100, dtype=int), np.zeros(4, dtype=int), TrainConfig(steps=3), progress=False)
    for name, array in model.named_parameters():
        assert np.array_equal(array, before[name]), f"{name} changed before the check"


def test_max_length_validates_training_length():
    for encoding in (RoPE(8), Sinusoidal(8), SelfExtend(8, 2, 4)):
        with pytest.raises(ValueError, match="trained_length must be >= 1"):
            encoding.max_length(0)


@pytest.mark.parametrize("tokenizer", [minitx.data.CharTokenizer.from_text("abc"), minitx.data.ByteTokenizer()])
@pytest.mark.parametrize("ids, error, message", [
    ([-1], ValueError, "Token id -1 is outside"),
    ([0, 300], ValueError, "Token id 300 is outside"),
    ([[1]], TypeError, "1-D sequence of integer"),
    ([0.5], TypeError, "1-D sequence of integer"),
])
def test_decode_rejects_ids_outside_the_vocabulary(tokenizer, ids, error, message):
    with pytest.raises(error, match=message):
        tokenizer.decode(ids)


@pytest.mark.parametrize("flag", ["no", 1, None])
def test_extrapolate_must_be_a_bool(flag):
    model = TransformerLM(ModelConfig(vocab_size=5, context_length=6, n_layer=1, n_head=1, n_embd=4))
    with pytest.raises(TypeError, match="extrapolate must be True or False"):
        model(np.zeros((1, 3), np.int64), extrapolate=flag)


def test_layernorm_rejects_wrong_width_and_eps():
    from minitx.layers import LayerNorm

    norm = LayerNorm(8)
    with pytest.raises(ValueError, match=r"x's last axis must have shape \(8,\)"):
        norm.forward(np.ones((2, 16), np.float32))
    norm.forward(np.ones((2, 8), np.float32))
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 8\)"):
        norm.backward(np.ones((4, 8), np.float32))
    for eps in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="eps must be a finite number > 0"):
            LayerNorm(8, eps=eps)
    with pytest.raises(TypeError, match="eps must be a number"):
        LayerNorm(8, eps="1e-5")


def test_gelu_backward_rejects_other_shape():
    from minitx.layers import GELU

    gelu = GELU()
    gelu.forward(np.ones(100, np.float32))
    with pytest.raises(ValueError, match=r"dout must have shape \(100,\)"):
        gelu.backward(np.ones(10, np.float32))


def test_passkey_analysis_rejects_bad_input():
    from minitx.long_context import answer_token_accuracy
    from minitx.plotting import plot_answer_attention

    with pytest.raises(ValueError, match="prompts is empty"):
        answer_token_accuracy(None, None, [])
    sentence, weights = "ab", np.zeros((2, 3, 6, 2))
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_answer_attention({}, sentence, " 1234x", heads=[0])
    with pytest.raises(ValueError, match=r"must have shape \(n_layer, NH, 6, 5\)"):
        plot_answer_attention({"rope": weights}, "abcde", " 1234x", heads=[0])
    with pytest.raises(ValueError, match="heads in 0 .. 2"):
        plot_answer_attention({"rope": weights}, sentence, " 1234x", heads=[3])
    with pytest.raises(ValueError, match="layer must lie in 0 .. 1"):
        plot_answer_attention({"rope": weights}, sentence, " 1234x", heads=[0], layer=2)
