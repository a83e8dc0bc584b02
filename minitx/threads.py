"""Thread counts for the compiled kernels and for BLAS, so the two never oversubscribe the cores.

minitx runs three thread pools: its own, for the blocked attention kernels
(``run_work_items``); Numba's, for the row kernel's ``prange``; and the BLAS library behind
NumPy's matmul, for the linear layers. ``set_num_threads(n)`` sets all three to n.

The blocked kernels release the GIL (``nogil=True``) and a small ``ThreadPoolExecutor`` calls
them on shares of their work items, instead of a ``prange`` loop compiled with
``parallel=True``. Measured reason (float32, 2 cores of a shared AMD EPYC): the first-ever
compile of every kernel took 26.9 s with ``parallel=True`` and 7.8 s with the same kernels
compiled without it. With the pool, the forward at T = 4096 ran 2.0 times as fast on 2
threads as on 1.

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
interleaved in one process) on an otherwise idle 2-core machine: 58 ms with the split and
78 ms without it. The blocked attention kernels run on the ``run_work_items`` pool, not on
Numba's OpenMP threads, so no OpenMP thread spins between the layers: the step measured 65 ms
both with and without GOMP_SPINCOUNT=0 in the environment.

NOTE: the split pays only when a core is free. With the 2 cores shared with other busy
processes (load average 5.7) the step measured 293 ms with the split and 245 ms without it.
set_num_threads(1) turns the split off, and also runs the attention kernels on one thread.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import threading


import numba
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


#: Thread count of the attention kernels. None until ``set_num_threads`` is called, and None
#: means max_num_threads().
_num_threads = None
#: One executor per thread count, created on first use. Its idle threads cost no CPU time.
_executors: dict[int, concurrent.futures.ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


def _forget_executors_after_fork() -> None:
    # A forked child inherits the executors but not their threads, so work submitted to them
    # would never run. The child creates new executors on first use instead.
    global _executors_lock
    _executors.clear()
    _executors_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_forget_executors_after_fork)

#: Contiguous shares of work items per thread. More shares than threads let a thread that
#: finishes early take over work, which matters when other processes share the cores.
SHARES_PER_THREAD = 4
#: Name prefix of the pool's threads, by which ``_in_pool_thread`` recognises them.
POOL_THREAD_PREFIX = "minitx-kernel"


def get_num_threads() -> int:
    """Return the number of threads the attention kernels currently use."""
    return max_num_threads() if _num_threads is None else _num_threads


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
    global _num_threads
    _num_threads = n
    numba.set_num_threads(n)
    _blas_controller().limit(limits=n, user_api="blas")


def _executor(n_threads: int) -> concurrent.futures.ThreadPoolExecutor:
    with _executors_lock:
        if n_threads not in _executors:
            _executors[n_threads] = concurrent.futures.ThreadPoolExecutor(
                max_workers=n_threads, thread_name_prefix=POOL_THREAD_PREFIX
            )
        return _executors[n_threads]


def _in_pool_thread() -> bool:
    """Return True in a thread of minitx's own pool.

    Work submitted from there runs in the calling thread: a pool thread that waited for more
    work from its own pool could wait for ever, since the threads that would run it may all be
    waiting too.
    """
    return threading.current_thread().name.startswith(POOL_THREAD_PREFIX)


def run_work_items(kernel, args: tuple, n_items: int) -> None:
    """Call ``kernel(*args, start, stop)`` on shares of range(n_items) in get_num_threads() threads.

    ``kernel`` must release the GIL (``nogil=True``), or the threads run one at a time. Each
    share is a contiguous run of items, so the kernel's item order decides the load balance.
    An exception raised in any share is raised here.
    """
    n_threads = min(get_num_threads(), n_items)
    if n_threads <= 1 or _in_pool_thread():
        kernel(*args, 0, n_items)
        return

    n_shares = min(n_items, n_threads * SHARES_PER_THREAD)
    bounds = [n_items * share // n_shares for share in range(n_shares + 1)]
    executor = _executor(n_threads)
    futures = [executor.submit(kernel, *args, bounds[s], bounds[s + 1]) for s in range(n_shares)]
    for future in futures:
        future.result()


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


def run_in_parallel(*tasks):
    """Run the zero-argument callables ``tasks`` at the same time and return their results in order.

    The calling thread runs the first task and the worker pool the others, so pass at most
    ``get_num_threads()`` tasks to keep one per core. BLAS is limited to one thread meanwhile,
    so the threads do not oversubscribe the cores. Only tasks that release the GIL, such as
    NumPy's matmul, run at the same time. Pure Python tasks take turns and gain nothing.
    """
    if len(tasks) <= 1 or get_num_threads() == 1 or _in_pool_thread():
        return [task() for task in tasks]
    with kernel_region():
        executor = _executor(len(tasks) - 1)
        futures = [executor.submit(task) for task in tasks[1:]]
        first = tasks[0]()
        return [first] + [future.result() for future in futures]


def matmul_by_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return a @ b for 2-D ``a`` (N, K) and ``b`` (K, M), with the rows of ``a`` split among threads.

    Each of the ``get_num_threads()`` blocks of rows is one BLAS call. A row of the result can
    differ from the same row of a single ``a @ b`` in the last bits, when BLAS chooses another
    kernel for the shorter block.
    """
    if np.ndim(a) != 2 or np.ndim(b) != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(
            f"matmul_by_rows needs 2-D a (N, K) and b (K, M), got shapes {np.shape(a)} and {np.shape(b)}. "
            "Reshape the inputs to 2-D first, for example x.reshape(-1, x.shape[-1])."
        )
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
