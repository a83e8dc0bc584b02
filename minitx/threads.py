"""Thread counts for the compiled kernels and for BLAS, so the two never oversubscribe the cores.

minitx runs two thread pools: Numba's, for the attention kernels (``prange``), and the BLAS
library behind NumPy's matmul, for the linear layers. ``set_num_threads(n)`` sets both to n.

Inside ``kernel_region()`` BLAS is limited to one thread. The attention functions and the
model's forward and backward run inside it (``blas_pinned``), because OpenBLAS worker threads
keep spinning for a while after each call and take the cores that Numba's threads then wait
for. Measured on 2 cores (benchmarks/train_step.py, demo model, batch 16 x 128): 5.8 s per
training step with both pools at 2 threads, 0.30 s with BLAS pinned during the model's
forward and backward. The BLAS libraries are found with threadpoolctl once, at first use, so
a BLAS library loaded after that (by importing torch, for example) is not limited.
"""

from __future__ import annotations

import contextlib
import functools

import numba
import threadpoolctl

from ._checks import check_int


@functools.lru_cache(maxsize=None)
def _blas_controller() -> threadpoolctl.ThreadpoolController:
    # Scanning the loaded libraries takes about a millisecond; reusing the controller makes
    # each later limit() cost microseconds.
    return threadpoolctl.ThreadpoolController()


def max_num_threads() -> int:
    """Return the largest thread count Numba allows (NUMBA_NUM_THREADS, by default the cores)."""
    return int(numba.config.NUMBA_NUM_THREADS)


def get_num_threads() -> int:
    """Return the number of threads the attention kernels currently use."""
    return int(numba.get_num_threads())


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the attention kernels and for BLAS (the linear layers).

    ``n`` must lie in 1 .. max_num_threads(); set NUMBA_NUM_THREADS before importing minitx
    to raise the upper bound.
    """
    n = check_int("n", n, minimum=1)
    limit = max_num_threads()
    if n > limit:
        raise ValueError(
            f"n must be <= {limit}, the thread count Numba was started with, got {n}. "
            "Set the environment variable NUMBA_NUM_THREADS before importing minitx to change it."
        )
    numba.set_num_threads(n)
    _blas_controller().limit(limits=n, user_api="blas")


@contextlib.contextmanager
def kernel_region():
    """Limit BLAS to one thread while compiled kernels run; restore the previous limit after."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def blas_pinned(method):
    """Decorate ``method`` so that it runs inside ``kernel_region()``."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with kernel_region():
            return method(*args, **kwargs)

    return wrapper
