"""Every backward pass against float64 centred finite differences.

Each check draws a random upstream gradient G and compares the analytic gradients of
sum(forward(x) * G) with centred differences of that scalar, for the input and every parameter.
"""

import numpy as np
import pytest

from conftest import assert_close, numerical_gradient
from minitx import ModelConfig, TransformerLM
from minitx import layer_kernels
from minitx.layers import (
    GELU,
    MLP,
    Embedding,
    LayerNorm,
    Linear,
    RMSNorm,
    cross_entropy,
    gelu_backward_reference,
    gelu_forward_reference,
    layernorm_backward_reference,
    layernorm_forward_reference,
)
from minitx.positions import RoPE, SelfExtend
from minitx.self_attention import CausalSelfAttention

F64 = np.float64
RTOL, ATOL = 1e-6, 1e-8


def check_layer(layer, x, rng, forward=None, backward=None):
    forward = forward or layer.forward
    backward = backward or layer.backward
    G = rng.standard_normal(forward(x).shape)

    def scalar():
        return float((forward(x) * G).sum())

    forward(x)
    dx = backward(G)
    assert_close(dx, numerical_gradient(scalar, x), RTOL, ATOL, what=f"{type(layer).__name__} dx")
    for name, param in layer.named_parameters():
        forward(x)
        backward(G)
        assert_close(layer.gradients()[name], numerical_gradient(scalar, param), RTOL, ATOL, what=f"{type(layer).__name__} d{name}")


def test_linear_backward(rng):
    check_layer(Linear(5, 4, rng, F64), rng.standard_normal((2, 3, 5)), rng)


def test_linear_without_bias_backward(rng):
    layer = Linear(5, 4, rng, F64, bias=False)
    assert "bias" not in layer.params
    check_layer(layer, rng.standard_normal((2, 3, 5)), rng)


@pytest.mark.parametrize("norm", [LayerNorm, RMSNorm])
def test_norm_backward(rng, norm):
    layer = norm(6, F64)
    for name in layer.params:  # move the gains off 1 and 0 so every term is exercised
        layer.params[name][...] = rng.standard_normal(6)
    check_layer(layer, rng.standard_normal((2, 3, 6)), rng)


def test_gelu_backward(rng):
    check_layer(GELU(), rng.standard_normal((2, 3, 5)) * 2, rng)


def test_gelu_matches_tanh_formula(rng):
    x = rng.standard_normal(11)
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    assert_close(GELU().forward(x), expected, 0, 1e-15)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_gelu_forward_kernels_equal_reference(rng, dtype, tol):
    x = (rng.standard_normal(23) * 3).astype(dtype)
    expected_out, expected_tanh = gelu_forward_reference(x)
    tanh, out = np.empty_like(x), np.empty_like(x)
    layer_kernels.gelu_tanh_argument(x, tanh)
    np.tanh(tanh, out=tanh)
    layer_kernels.gelu_from_tanh(x, tanh, out)
    assert_close(tanh, expected_tanh, tol, tol, what="tanh")
    assert_close(out, expected_out, tol, tol, what="out")


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_gelu_backward_kernel_equals_reference(rng, dtype, tol):
    x = (rng.standard_normal(23) * 3).astype(dtype)
    dout = rng.standard_normal(23).astype(dtype)
    tanh = np.tanh(GELU.SQRT_2_OVER_PI * (x + 0.044715 * x**3))
    dx = np.empty_like(x)
    layer_kernels.gelu_backward(x, tanh, dout, dx)
    assert_close(dx, gelu_backward_reference(x, tanh, dout), tol, tol)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_layernorm_kernels_equal_reference(rng, dtype, tol):
    N, C = 7, 6
    x = (rng.standard_normal((N, C)) * 2 + 1).astype(dtype)
    weight, bias = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    dout = rng.standard_normal((N, C)).astype(dtype)
    out, xhat, rstd = np.empty_like(x), np.empty_like(x), np.empty(N, dtype)
    layer_kernels.layernorm_forward(x, weight, bias, 1e-5, out, xhat, rstd)
    expected_out, expected_xhat, expected_rstd = layernorm_forward_reference(x, weight, bias, 1e-5)
    assert_close(out, expected_out, tol, tol, what="out")
    assert_close(xhat, expected_xhat, tol, tol, what="xhat")
    assert_close(rstd, expected_rstd[:, 0], tol, tol, what="rstd")

    dx, dweight, dbias = np.empty_like(x), np.zeros(C), np.zeros(C)
    layer_kernels.layernorm_backward(dout, xhat, rstd, weight, dx, dweight, dbias)
    expected = layernorm_backward_reference(dout, expected_xhat, expected_rstd, weight)
    expected_dx, expected_dweight, expected_dbias = expected
    assert_close(dx, expected_dx, tol, tol, what="dx")
    assert_close(dweight, expected_dweight, tol, tol, what="dweight")
    assert_close(dbias, expected_dbias, tol, tol, what="dbias")


def test_layernorm_reference_backward(rng):
    layer = LayerNorm(6, F64)
    for name in layer.params:
        layer.params[name][...] = rng.standard_normal(6)

    weight, bias = layer.params["weight"], layer.params["bias"]

    def forward(x):
        out, layer.xhat, layer.rstd = layernorm_forward_reference(x, weight, bias, layer.eps)
        return out

    def backward(dout):
        dx, layer.grads["weight"], layer.grads["bias"] = layernorm_backward_reference(dout, layer.xhat, layer.rstd, weight)
        return dx

    check_layer(layer, rng.standard_normal((2, 3, 6)), rng, forward=forward, backward=backward)


def test_gelu_reference_backward(rng):
    layer = GELU()

    def forward(x):
        layer.x = x
        out, layer.tanh = gelu_forward_reference(x)
        return out

    check_layer(layer, rng.standard_normal((2, 3, 5)) * 2, rng, forward=forward,
                backward=lambda dout: gelu_backward_reference(layer.x, layer.tanh, dout))


def test_mlp_backward(rng):
    check_layer(MLP(4, rng, F64, hidden=7), rng.standard_normal((2, 3, 4)), rng)


def test_embedding_backward(rng):
    layer = Embedding(7, 5, rng, F64)
    tokens = np.array([[1, 3, 3, 0], [6, 1, 2, 3]])  # repeated ids must accumulate
    G = rng.standard_normal((2, 4, 5))

    def scalar():
        return float((layer.forward(tokens) * G).sum())

    layer.forward(tokens)
    layer.backward(G)
    assert_close(layer.grads["weight"], numerical_gradient(scalar, layer.params["weight"]), RTOL, ATOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_backward_kernel_equals_add_at(rng, dtype):
    tokens = np.array([4, 1, 4, 0, 4, 2, 1])  # repeated ids must accumulate
    dout = rng.standard_normal((7, 3)).astype(dtype)
    expected = np.zeros((6, 3), dtype)
    np.add.at(expected, tokens, dout)
    dweight = np.zeros((6, 3), dtype)
    layer_kernels.embedding_backward(tokens, dout, dweight)
    assert_close(dweight, expected, 0, 0)


def test_cross_entropy_backward(rng):
    logits = rng.standard_normal((2, 3, 5))
    targets = np.array([[0, 4, 2], [1, 1, 3]])
    _, dlogits = cross_entropy(logits, targets)
    assert_close(dlogits, numerical_gradient(lambda: cross_entropy(logits, targets)[0], logits), RTOL, ATOL)


def test_cross_entropy_value_and_large_logits():
    logits = np.array([[[1000.0, 0.0, -1000.0]]])
    loss, _ = cross_entropy(logits, np.array([[1]]))
    assert loss == pytest.approx(1000.0)
    uniform, _ = cross_entropy(np.zeros((2, 3, 7)), np.zeros((2, 3), dtype=int))
    assert uniform == pytest.approx(np.log(7))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("kind", ["none", "rope", "rope-half", "self-extend", "self-extend-uneven"])
def test_self_attention_backward(rng, backend, kind):
    C, NH, T = 12, 3, 7
    hs = C // NH
    position = {
        "none": None,
        "rope": RoPE(hs),
        "rope-half": RoPE(hs, pairing="half"),
        "self-extend": SelfExtend(hs, group_size=2, window=4),
        "self-extend-uneven": SelfExtend(hs, group_size=3, window=2),
    }[kind]
    layer = CausalSelfAttention(C, NH, position, rng, F64)
    layer.backend = backend
    for name in layer.c_attn.params:  # larger weights give non-uniform attention
        layer.c_attn.params[name][...] = rng.standard_normal(layer.c_attn.params[name].shape) * 0.5
    positions = np.arange(T)
    check_layer(layer, rng.standard_normal((2, T, C)), rng, forward=lambda x: layer.forward(x, positions))


@pytest.mark.parametrize("position, norm", [("rope", "layernorm"), ("sinusoidal", "rmsnorm"), ("self-extend", "layernorm")])
def test_model_backward(rng, position, norm):
    config = ModelConfig(vocab_size=11, context_length=9, n_layer=2, n_head=2, n_embd=8,
                         position=position, norm=norm, group_size=2, window=3, dtype="float64")
    model = TransformerLM(config, seed=3)
    for name, param in model.named_parameters():
        param[...] = rng.standard_normal(param.shape) * 0.3
    tokens = rng.integers(0, 11, size=(2, 9))
    targets = rng.integers(0, 11, size=(2, 9))

    def loss():
        return model.forward(tokens, targets)[1]

    loss()
    grads = model.backward()
    params = model.parameters()
    # Every parameter, a few entries each, to keep the test fast.
    for name, param in params.items():
        flat = param.reshape(-1)
        picks = rng.choice(flat.size, size=min(4, flat.size), replace=False)
        for index in picks:
            saved = flat[index]
            flat[index] = saved + 1e-6
            plus = loss()
            flat[index] = saved - 1e-6
            minus = loss()
            flat[index] = saved
            numeric = (plus - minus) / 2e-6
            analytic = grads[name].reshape(-1)[index]
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8), f"{name}[{index}]"


def test_cross_entropy_ignores_minus_one(rng):
    logits = rng.standard_normal((2, 3, 5))
    targets = np.array([[0, -1, 2], [-1, 1, 3]])
    loss, dlogits = cross_entropy(logits, targets)
    kept = targets != -1
    subset, _ = cross_entropy(logits[kept][None], targets[kept][None])
    assert loss == pytest.approx(subset)
    assert np.all(dlogits[~kept] == 0)
    assert_close(dlogits, numerical_gradient(lambda: cross_entropy(logits, targets)[0], logits), RTOL, ATOL)


def test_model_rejects_targets_below_minus_one():
    model = TransformerLM(ModelConfig(11, 8, n_layer=1, n_head=2, n_embd=8))
    tokens = np.zeros((2, 5), dtype=np.int64)
    _, loss = model.forward(tokens, np.full((2, 5), -1))
    assert loss == 0.0
    with pytest.raises(ValueError, match="token ids"):
        model.forward(tokens, np.full((2, 5), -2))
