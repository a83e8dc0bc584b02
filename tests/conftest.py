"""Shared helpers for the spec tests: seeded generators and centred finite differences.

Sizes are chosen different in every dimension (for example B=2, NH=3, T=7, hs=8) so that a
transposed or mis-reshaped axis cannot pass by accident.

Under NUMBA_DISABLE_JIT=1 the kernels run as Python loops, thousands of times slower. The
modules in KERNEL_TEST_MODULES still run them, at small sizes; every other test (training,
generation, the command line) then runs its model's attention through the NumPy reference.
"""

import os
import types
from unittest import mock

import numba
import numpy as np
import pytest

from minitx.attention import api

KERNEL_TEST_MODULES = {"test_attention", "test_bad_input", "test_kernels", "test_layers"}


@pytest.fixture(autouse=True)
def reference_attention_without_jit(request):
    """With NUMBA_DISABLE_JIT=1, route model attention to the NumPy reference outside kernel tests.

    Subprocesses started by those tests (the command line) get the JIT back. unittest.mock is
    used rather than monkeypatch, because some tests call monkeypatch.undo().
    """
    if not numba.config.DISABLE_JIT or request.module.__name__ in KERNEL_TEST_MODULES:
        yield
        return
    reference_api = types.SimpleNamespace(
        forward=lambda *args, backend=None, **kwargs: api.forward(*args, backend="numpy", **kwargs),
        backward=lambda *args, backend=None, **kwargs: api.backward(*args, backend="numpy", **kwargs),
    )
    with mock.patch("minitx.self_attention.attention", reference_api), mock.patch.dict(
        os.environ, {"NUMBA_DISABLE_JIT": "0"}
    ):
        yield


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
