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

The linear layers still use every core: ``matmul_by_rows`` and ``run_in_parallel`` give each
of ``get_num_threads()`` Python threads its own single-threaded BLAS call. NumPy releases the
GIL inside BLAS, so the calls run at the same time, and the idle threads of this pool block
instead of spinning, which leaves the cores free for the attention kernels that follow.

Measured for the demo step (benchmarks/train_step.py's model and batch, medians of 30,
interleaved in one process) on an otherwise idle 2-core machine: 58 ms with the split, 78 ms
without it, and about 80 ms with the split but without GOMP_SPINCOUNT=0 (set below).

NOTE: the split pays only when a core is free. With the 2 cores shared with other busy
processes (load average 5.7, before GOMP_SPINCOUNT was set) the step measured 293 ms with the
split and 245 ms without it. set_num_threads(1) turns the split off, and also runs the
attention kernels on one thread.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os

# After each parallel kernel, the threads of Numba's "omp" threading layer (GNU libgomp) keep
# spinning for a while by default, and on 2 cores a spinning thread takes the core that the
# second matmul thread needs. A spin count of 0 makes them sleep at once. libgomp reads the
# variable when it is loaded, normally at Numba's first parallel call. A value set by the
# user is kept.
# NOTE: this has no effect when libgomp was loaded before minitx: by an earlier parallel Numba
# call, or by importing torch, whose bundled libgomp.so.1 Numba then shares (seen in
# /proc/self/maps with torch 2.13). Its threads then keep spinning, and the demo step takes
# about 80 ms instead of 60 ms on an idle 2-core machine. A libgomp loaded after minitx (torch
# imported later) reads the 0 as well, which measured torch's demo step at 82 ms instead of
# 56 ms.
os.environ.setdefault("GOMP_SPINCOUNT", "0")

import numba  # noqa: E402 (after the environment variable above)
import numpy as np
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


@functools.lru_cache(maxsize=None)
def _worker_pool(process_id: int) -> concurrent.futures.ThreadPoolExecutor:
    # Keyed on the process id because a forked child inherits the pool object but not its threads.
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=max(max_num_threads() - 1, 1), thread_name_prefix="minitx-blas"
    )


def run_in_parallel(*tasks):
    """Run the zero-argument callables ``tasks`` at the same time and return their results in order.

    The calling thread runs the first task and the worker pool the others, so pass at most
    ``get_num_threads()`` tasks to keep one per core. BLAS is limited to one thread meanwhile,
    so the threads do not oversubscribe the cores. Only tasks that release the GIL, such as
    NumPy's matmul, run at the same time. Pure Python tasks take turns and gain nothing.
    """
    if len(tasks) <= 1 or get_num_threads() == 1:
        return [task() for task in tasks]
    with kernel_region():
        futures = [_worker_pool(os.getpid()).submit(task) for task in tasks[1:]]
        first = tasks[0]()
        return [first] + [future.result() for future in futures]


def matmul_by_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return a @ b for 2-D ``a`` (N, K) and ``b`` (K, M), with the rows of ``a`` split among threads.

    Each of the ``get_num_threads()`` blocks of rows is one BLAS call. A row of the result can
    differ from the same row of a single ``a @ b`` in the last bits, when BLAS chooses another
    kernel for the shorter block.
    """
    n_blocks = min(get_num_threads(), a.shape[0])
    if n_blocks <= 1:
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))  # (N, M)
    bounds = np.linspace(0, a.shape[0], n_blocks + 1).astype(int)
    tasks = [
        functools.partial(np.matmul, a[start:stop], b, out=out[start:stop])  # (rows, K) @ (K, M)
        for start, stop in zip(bounds[:-1], bounds[1:])
    ]
    run_in_parallel(*tasks)
    return out
