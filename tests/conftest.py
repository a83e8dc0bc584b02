"""Shared helpers for the spec tests: seeded generators and centred finite differences.

Sizes are chosen different in every dimension (for example B=2, NH=3, T=7, hs=8) so that a
transposed or mis-reshaped axis cannot pass by accident.
"""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def numerical_gradient(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Return d f() / d x by centred differences, perturbing ``x`` in place one entry at a time."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, grad_flat = x.reshape(-1), grad.reshape(-1)
    for index in range(flat.size):
        saved = flat[index]
        flat[index] = saved + eps
        plus = f()
        flat[index] = saved - eps
        minus = f()
        flat[index] = saved
        grad_flat[index] = (plus - minus) / (2 * eps)
    return grad


def assert_close(got, expected, rtol, atol, what=""):
    """Assert elementwise closeness and report the worst entry with expected and got values."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    error = np.abs(got - expected) - (atol + rtol * np.abs(expected))
    worst = np.unravel_index(np.argmax(error), error.shape) if error.size else ()
    assert error.size == 0 or error.max() <= 0, (
        f"{what}: at {worst} expected {expected[worst]!r}, got {got[worst]!r} "
        f"(max abs diff {np.abs(got - expected).max():.3e})"
    )
