"""Layers with hand-written forward and backward passes, in NumPy.

Each layer caches what its backward needs during ``forward`` and, in ``backward``, stores the
gradients of its parameters in ``self.grads`` and returns the gradient of its input. Every
backward is checked against float64 centred finite differences in the tests.

Some passes also have Numba kernels in ``layer_kernels``, used when the JIT is on: the GELU
forward (around NumPy's tanh) and backward, LayerNorm forward and backward, and the
embedding backward. The NumPy versions here
are their references. Linear splits its matmuls among the minitx threads (``minitx.threads``).

The GELU is the tanh approximation used by GPT-2 (Hendrycks and Gimpel 2016, eq. in section 2).
LayerNorm follows Ba et al. 2016; RMSNorm follows Zhang and Sennrich 2019.

Not done here: dropout, weight tying between the embedding and the LM head, mixed precision.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import layer_kernels
from ._checks import check_positive_float
from .threads import matmul_by_rows, run_in_parallel


def check_same_shape(name: str, shape: tuple, expected: tuple, source: str) -> None:
    """Raise if ``shape`` differs from ``expected``, the shape that ``source`` fixed."""
    if tuple(shape) != tuple(expected):
        raise ValueError(
            f"{name} must have shape {tuple(expected)} ({source}), got {tuple(shape)}. "
            "Pass the gradient of this layer's last forward output, or the input it was built for."
        )


def kernels_apply(*arrays: np.ndarray) -> bool:
    """Return whether the Numba kernels of ``layer_kernels`` should run on ``arrays``.

    They need one float dtype for all arrays, and without the JIT (NUMBA_DISABLE_JIT=1) they
    would be Python loops, much slower than the NumPy versions used instead.
    """
    dtype = arrays[0].dtype
    return (
        not numba.config.DISABLE_JIT
        and dtype in (np.float32, np.float64)
        and all(array.dtype == dtype for array in arrays)
    )


class Module:
    """A layer with named parameters, their gradients and child modules."""

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def children(self):
        """Yield (name, module) for every direct child, including those in lists."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, list):
                for index, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{index}", item

    def named_parameters(self, prefix: str = ""):
        """Yield (dotted name, array) for every parameter of this module and its children."""
        for name, array in self.params.items():
            yield prefix + name, array
        for child_name, child in self.children():
            yield from child.named_parameters(f"{prefix}{child_name}.")

    def named_modules(self, prefix: str = ""):
        """Yield (dotted name, module) for this module and every descendant."""
        yield prefix.rstrip("."), self
        for child_name, child in self.children():
            yield from child.named_modules(f"{prefix}{child_name}.")

    def parameters(self) -> dict[str, np.ndarray]:
        return dict(self.named_parameters())

    def gradients(self) -> dict[str, np.ndarray]:
        """Return the gradient of every parameter by dotted name, zeros where none was computed."""
        grads = {}
        for prefix, module in self.named_modules():
            prefix = f"{prefix}." if prefix else ""
            for name, array in module.params.items():
                grads[prefix + name] = module.grads.get(name, np.zeros_like(array))
        return grads


class Embedding(Module):
    """Token embedding: ids (B, T) -> vectors (B, T, C)."""

    def __init__(self, vocab_size: int, n_embd: int, rng: np.random.Generator, dtype=np.float32, std=0.02):
        super().__init__()
        self.params["weight"] = (rng.standard_normal((vocab_size, n_embd)) * std).astype(dtype)

    def forward(self, tokens: np.ndarray) -> np.ndarray:
        self.tokens = tokens
        return self.params["weight"][tokens]  # (B, T) -> (B, T, C)

    def backward(self, dout: np.ndarray) -> None:
        weight = self.params["weight"]
        grad = np.zeros_like(weight)
        tokens = self.tokens.reshape(-1)  # (B, T) -> (N,)
        d2 = dout.reshape(-1, weight.shape[1])  # (B, T, C) -> (N, C)
        if kernels_apply(d2, grad):
            layer_kernels.embedding_backward(np.ascontiguousarray(tokens), np.ascontiguousarray(d2), grad)
        else:
            np.add.at(grad, tokens, d2)  # adds row n of d2 into row tokens[n], so repeated ids accumulate
        self.grads["weight"] = grad


class Linear(Module):
    """y = x W + b, with W stored as (in_features, out_features)."""

    def __init__(self, in_features, out_features, rng, dtype=np.float32, bias=True, std=0.02):
        super().__init__()
        self.params["weight"] = (rng.standard_normal((in_features, out_features)) * std).astype(dtype)
        if bias:
            self.params["bias"] = np.zeros(out_features, dtype=dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        weight = self.params["weight"]
        # 2-D matmuls over all N = B * T rows: with a 3-D operand NumPy calls BLAS once per
        # batch row. The rows are split among the minitx threads (see minitx.threads).
        x2 = x.reshape(-1, weight.shape[0])  # (..., in) -> (N, in)
        out = matmul_by_rows(x2, weight)  # (N, in) @ (in, out) -> (N, out)
        if "bias" in self.params:
            out += self.params["bias"]
        return out.reshape(*x.shape[:-1], weight.shape[1])  # (N, out) -> (..., out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        weight = self.params["weight"]
        x2 = self.x.reshape(-1, weight.shape[0])  # (..., in) -> (N, in)
        d2 = dout.reshape(-1, weight.shape[1])  # (..., out) -> (N, out)
        # The two products take the same number of operations and run at the same time.
        dweight, dx = run_in_parallel(
            lambda: x2.T @ d2,  # (in, N) @ (N, out) -> (in, out)
            lambda: d2 @ weight.T,  # (N, out) @ (out, in) -> (N, in)
        )
        self.grads["weight"] = dweight
        if "bias" in self.params:
            self.grads["bias"] = d2.sum(axis=0)
        return dx.reshape(self.x.shape)  # (N, in) -> (..., in)


class LayerNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis."""

    def __init__(self, n_embd: int, dtype=np.float32, eps: float = 1e-5):
        super().__init__()
        self.eps = check_positive_float("eps", eps)
        self.params["weight"] = np.ones(n_embd, dtype=dtype)
        self.params["bias"] = np.zeros(n_embd, dtype=dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        weight, bias = self.params["weight"], self.params["bias"]
        check_same_shape("x's last axis", np.shape(x)[-1:], weight.shape, "the layer's n_embd")
        if not kernels_apply(x, weight, bias):
            out, self.xhat, self.rstd = layernorm_forward_reference(x, weight, bias, self.eps)
            return out
        C = x.shape[-1]
        x2 = np.ascontiguousarray(x).reshape(-1, C)  # (..., C) -> (N, C)
        out, xhat = np.empty_like(x2), np.empty_like(x2)
        rstd = np.empty(x2.shape[0], dtype=x.dtype)  # (N,)
        layer_kernels.layernorm_forward(x2, weight, bias, self.eps, out, xhat, rstd)
        self.xhat = xhat.reshape(x.shape)  # (N, C) -> (..., C)
        self.rstd = rstd.reshape(*x.shape[:-1], 1)  # (N,) -> (..., 1)
        return out.reshape(x.shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        weight = self.params["weight"]
        check_same_shape("dout", np.shape(dout), self.xhat.shape, "the shape of the last forward input")
        if not kernels_apply(dout, self.xhat, weight):
            dx, dweight, dbias = layernorm_backward_reference(dout, self.xhat, self.rstd, weight)
            self.grads["weight"], self.grads["bias"] = dweight, dbias
            return dx
        C = dout.shape[-1]
        d2 = np.ascontiguousarray(dout).reshape(-1, C)  # (..., C) -> (N, C)
        dx = np.empty_like(d2)
        dweight, dbias = np.zeros(C), np.zeros(C)  # float64 sums over the N rows
        layer_kernels.layernorm_backward(
            d2, self.xhat.reshape(-1, C), self.rstd.reshape(-1), weight, dx, dweight, dbias
        )
        self.grads["weight"] = dweight.astype(weight.dtype)
        self.grads["bias"] = dbias.astype(weight.dtype)
        return dx.reshape(dout.shape)  # (N, C) -> (..., C)


def layernorm_forward_reference(x, weight, bias, eps):
    """Return (out, xhat, rstd) of LayerNorm over the last axis of x, in NumPy."""
    # The in-place steps compute what x.var and the textbook formula do, with fewer
    # (..., C) temporaries: each one is a fresh allocation and a pass over memory.
    xhat = x - x.mean(axis=-1, keepdims=True)  # (..., C) centred
    var = np.square(xhat).mean(axis=-1, keepdims=True)  # (..., 1)
    rstd = 1.0 / np.sqrt(var + eps)  # (..., 1)
    xhat *= rstd
    out = xhat * weight
    out += bias
    return out, xhat, rstd


def layernorm_backward_reference(dout, xhat, rstd, weight):
    """Return (dx, dweight, dbias) of LayerNorm, in NumPy, from the forward's xhat and rstd."""
    C = dout.shape[-1]
    d2 = dout.reshape(-1, C)  # (..., C) -> (N, C)
    dweight = np.einsum("nc,nc->c", d2, xhat.reshape(-1, C))  # sum of dout * xhat over rows
    dbias = d2.sum(axis=0)
    dxhat = dout * weight
    # d/dx of (x - mean) * rstd, with the mean and variance both depending on x:
    # rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    projection = np.einsum("...c,...c->...", dxhat, xhat)[..., None] / C  # (..., 1)
    dx = xhat * projection
    np.subtract(dxhat, dx, out=dx)
    dx -= dxhat.mean(axis=-1, keepdims=True)
    dx *= rstd
    return dx, dweight, dbias


class RMSNorm(Module):
    """y = x / sqrt(mean(x^2) + eps) * weight over the last axis."""

    def __init__(self, n_embd: int, dtype=np.float32, eps: float = 1e-5):
        super().__init__()
        self.eps = check_positive_float("eps", eps)
        self.params["weight"] = np.ones(n_embd, dtype=dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.rrms = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + self.eps)  # (..., 1)
        self.xhat = x * self.rrms
        return self.xhat * self.params["weight"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        C = dout.shape[-1]
        self.grads["weight"] = (dout * self.xhat).reshape(-1, C).sum(axis=0)
        dxhat = dout * self.params["weight"]
        return self.rrms * (dxhat - self.xhat * (dxhat * self.xhat).mean(axis=-1, keepdims=True))


NORMS = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}


class GELU(Module):
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        self.x = x
        if not kernels_apply(x):
            out, self.tanh = gelu_forward_reference(x)
            return out
        flat_x = np.ascontiguousarray(x).reshape(-1)  # (...) -> (N,)
        tanh, out = np.empty(x.shape, dtype=x.dtype), np.empty(x.shape, dtype=x.dtype)
        layer_kernels.gelu_tanh_argument(flat_x, tanh.reshape(-1))
        np.tanh(tanh, out=tanh)  # in place: NumPy's SIMD tanh is faster than a loop of scalar ones
        layer_kernels.gelu_from_tanh(flat_x, tanh.reshape(-1), out.reshape(-1))
        self.tanh = tanh
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, tanh = self.x, self.tanh
        check_same_shape("dout", np.shape(dout), np.shape(x), "the shape of the last forward input")
        if not kernels_apply(x, tanh, dout):
            return gelu_backward_reference(x, tanh, dout)
        flat = lambda a: np.ascontiguousarray(a).reshape(-1)  # (...) -> (N,)
        dx = np.empty(x.shape, dtype=x.dtype)
        layer_kernels.gelu_backward(flat(x), flat(tanh), flat(dout), dx.reshape(-1))
        return dx


def gelu_forward_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (GELU(x), tanh(sqrt(2/pi) (x + 0.044715 x^3))) for float x, in NumPy.

    Written with in-place steps: each (B, T, 4C) temporary costs an allocation and a pass over
    memory, and the MLP's hidden layer is the largest activation of the model.
    """
    inner = x * x
    inner *= x
    inner *= 0.044715
    inner += x
    inner *= GELU.SQRT_2_OVER_PI
    tanh = np.tanh(inner, out=inner)
    out = 0.5 * x
    out *= 1.0 + tanh
    return out, tanh


def gelu_backward_reference(x: np.ndarray, tanh: np.ndarray, dout: np.ndarray) -> np.ndarray:
    """Return dout * d/dx GELU(x) in NumPy, given the ``tanh`` that GELU.forward computed.

    d/dx = 0.5 (1 + tanh) + 0.5 x (1 - tanh^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    """
    dinner = x * x
    dinner *= 3 * 0.044715
    dinner += 1.0
    dinner *= GELU.SQRT_2_OVER_PI
    sech2 = tanh * tanh
    np.subtract(1.0, sech2, out=sech2)  # 1 - tanh^2
    sech2 *= dinner
    dx = 0.5 * x
    dx *= sech2
    half_one_plus_tanh = np.add(1.0, tanh, out=dinner)  # reuses the buffer of dinner
    half_one_plus_tanh *= 0.5
    dx += half_one_plus_tanh
    dx *= dout
    return dx


class MLP(Module):
    """Position-wise feed-forward: Linear(C, 4C) -> GELU -> Linear(4C, C)."""

    def __init__(self, n_embd: int, rng, dtype=np.float32, hidden: int | None = None, proj_std=0.02):
        super().__init__()
        hidden = hidden or 4 * n_embd
        self.c_fc = Linear(n_embd, hidden, rng, dtype)
        self.gelu = GELU()
        self.c_proj = Linear(hidden, n_embd, rng, dtype, std=proj_std)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.c_proj.forward(self.gelu.forward(self.c_fc.forward(x)))  # (B, T, C) -> (B, T, C)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return self.c_fc.backward(self.gelu.backward(self.c_proj.backward(dout)))


IGNORE_INDEX = -1


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Return (mean loss in nats, dlogits) for logits (B, T, V) and integer targets (B, T).

    Targets equal to ``IGNORE_INDEX`` (-1) are left out: they add no loss and no gradient, and
    the mean is over the other targets. The log-softmax subtracts each row's max first, so large
    logits cannot overflow.
    """
    B, T, V = logits.shape
    scored = targets != IGNORE_INDEX  # (B, T)
    count = max(int(scored.sum()), 1)
    safe_targets = np.where(scored, targets, 0)[..., None]  # (B, T, 1), any valid id where ignored
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (B, T, V)
    picked = np.take_along_axis(log_probs, safe_targets, axis=-1)[..., 0]  # (B, T)
    loss = -float(np.where(scored, picked, 0.0).astype(np.float64).sum() / count)

    dlogits = np.exp(log_probs)
    np.put_along_axis(dlogits, safe_targets, np.take_along_axis(dlogits, safe_targets, -1) - 1, -1)
    dlogits /= count
    dlogits *= scored[..., None]
    return loss, dlogits
