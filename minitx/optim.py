"""AdamW, the learning-rate schedule and gradient clipping.

AdamW is Adam with decoupled weight decay (Loshchilov and Hutter 2019, algorithm 2): the decay
multiplies the weights by (1 - lr * weight_decay) directly instead of entering the gradient, so
it is not rescaled by Adam's per-parameter step size. As in GPT-2 practice, only matrices
(2-D arrays: linear weights and the embedding) are decayed; biases and norm gains are not.
"""

from __future__ import annotations

import math

import numpy as np


class AdamW:
    """AdamW over a dict of named parameter arrays, updated in place."""

    def __init__(self, params: dict[str, np.ndarray], betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1):
        self.params = params
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.step_count = 0
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}
        self._scratch: dict[str, np.ndarray] = {}

    def step(self, grads: dict[str, np.ndarray], lr: float) -> None:
        """Apply one update with learning rate ``lr``.

        Every array is updated whole, in place, with one scratch buffer per parameter for the
        intermediate terms, so a step allocates no memory after the first.
        """
        self.step_count += 1
        t = self.step_count
        correction1 = 1 - self.beta1**t
        correction2 = 1 - self.beta2**t
        for name, p in self.params.items():
            g = grads[name]
            m, v = self.m[name], self.v[name]
            if name not in self._scratch:
                self._scratch[name] = np.empty_like(p)
            scratch = self._scratch[name]

            # m = beta1 m + (1 - beta1) g
            m *= self.beta1
            m += np.multiply(1 - self.beta1, g, out=scratch)

            # v = beta2 v + (1 - beta2) g^2
            v *= self.beta2
            np.multiply(1 - self.beta2, g, out=scratch)
            scratch *= g
            v += scratch

            if p.ndim >= 2 and self.weight_decay:
                p *= 1 - lr * self.weight_decay

            # p -= (lr / correction1) m / (sqrt(v / correction2) + eps)
            update = np.divide(v, correction2, out=scratch)
            np.sqrt(update, out=update)
            update += self.eps
            np.divide(m, update, out=update)
            update *= lr / correction1
            p -= update

    def state(self) -> dict[str, np.ndarray]:
        """Return the moment estimates and step count as arrays, for a checkpoint."""
        state = {"step_count": np.array(self.step_count, dtype=np.int64)}
        for name in self.params:
            state[f"m.{name}"] = self.m[name]
            state[f"v.{name}"] = self.v[name]
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.step_count = int(state["step_count"])
        for name in self.params:
            self.m[name][...] = state[f"m.{name}"]
            self.v[name][...] = state[f"v.{name}"]


def learning_rate(step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float) -> float:
    """Return the learning rate at ``step`` (0-based): linear warmup, then cosine decay to min_lr."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``; return the norm before."""
    total = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
    if not math.isfinite(total):
        raise FloatingPointError(
            f"The gradient norm is {total}. Training diverged; lower the learning rate."
        )
    if max_norm and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads.values():
            g *= scale
    return total
