"""Layers with hand-written forward and backward passes, in NumPy.

Each layer caches what its backward needs during ``forward`` and, in ``backward``, stores the
gradients of its parameters in ``self.grads`` and returns the gradient of its input. Every
backward is checked against float64 centred finite differences in the tests.

The GELU is the tanh approximation used by GPT-2 (Hendrycks and Gimpel 2016, eq. in section 2).
LayerNorm follows Ba et al. 2016; RMSNorm follows Zhang and Sennrich 2019.

Not done here: dropout, weight tying between the embedding and the LM head, mixed precision.
"""

from __future__ import annotations

import math

import numpy as np


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
        np.add.at(grad, self.tokens.reshape(-1), dout.reshape(-1, weight.shape[1]))  # rows by id
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
        out = x @ self.params["weight"]  # (..., in) @ (in, out) -> (..., out)
        if "bias" in self.params:
            out = out + self.params["bias"]
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        weight = self.params["weight"]
        x2 = self.x.reshape(-1, weight.shape[0])  # (..., in) -> (N, in)
        d2 = dout.reshape(-1, weight.shape[1])  # (..., out) -> (N, out)
        self.grads["weight"] = x2.T @ d2  # (in, N) @ (N, out) -> (in, out)
        if "bias" in self.params:
            self.grads["bias"] = d2.sum(axis=0)
        return dout @ weight.T  # (..., out) @ (out, in) -> (..., in)


class LayerNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis."""

    def __init__(self, n_embd: int, dtype=np.float32, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.params["weight"] = np.ones(n_embd, dtype=dtype)
        self.params["bias"] = np.zeros(n_embd, dtype=dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        self.rstd = 1.0 / np.sqrt(var + self.eps)  # (..., 1)
        self.xhat = (x - mean) * self.rstd
        return self.xhat * self.params["weight"] + self.params["bias"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        C = dout.shape[-1]
        self.grads["weight"] = (dout * self.xhat).reshape(-1, C).sum(axis=0)
        self.grads["bias"] = dout.reshape(-1, C).sum(axis=0)
        dxhat = dout * self.params["weight"]
        # d/dx of (x - mean) * rstd, with the mean and variance both depending on x
        return self.rstd * (
            dxhat
            - dxhat.mean(axis=-1, keepdims=True)
            - self.xhat * (dxhat * self.xhat).mean(axis=-1, keepdims=True)
        )


class RMSNorm(Module):
    """y = x / sqrt(mean(x^2) + eps) * weight over the last axis."""

    def __init__(self, n_embd: int, dtype=np.float32, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
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
        self.x = x
        self.tanh = np.tanh(self.SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x)))
        return 0.5 * x * (1.0 + self.tanh)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, tanh = self.x, self.tanh
        dinner = self.SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
        return dout * (0.5 * (1.0 + tanh) + 0.5 * x * (1.0 - tanh * tanh) * dinner)


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
