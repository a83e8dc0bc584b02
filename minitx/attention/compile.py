"""The ``jit`` decorator every attention kernel uses, and where compiled code is cached.

Numba compiles a kernel on its first call, once per dtype, which takes seconds. With
``cache=True`` the machine code is written to disk and later processes load it in
milliseconds. Numba looks for a writable cache directory in this order: ``NUMBA_CACHE_DIR``,
``__pycache__`` beside the source file, then the user's cache directory. When none of them is
writable (a read-only install and a read-only home), Numba raises at decoration time, which
would make ``import minitx`` fail. ``enable_cache`` catches that, retries in a per-user folder
under the system temporary directory and, if that fails too, leaves the kernel uncached: it
still runs, and only compiles again in every process.
"""

from __future__ import annotations

import getpass
import logging
import os
import tempfile

import numba

log = logging.getLogger(__name__)

#: LLVM fast-math flags for the kernels. Reassociation lets LLVM vectorise the dot-product
#: reductions; 'nnan' and 'ninf' are left out because masked scores are -inf by design.
FASTMATH = frozenset({"nsz", "arcp", "contract", "reassoc"})


def fallback_cache_dir() -> str:
    """Return the per-user cache folder under the system temporary directory."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid, e.g. in some containers
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"minitx-numba-cache-{user}")


def enable_cache(dispatcher) -> str:
    """Turn on Numba's on-disk cache for ``dispatcher``; return "cached" or "uncached".

    Tries Numba's own search order first, then ``fallback_cache_dir()``. A kernel whose cache
    cannot be placed anywhere keeps working without a cache, and a warning is logged for it.
    """
    if not hasattr(dispatcher, "enable_caching"):  # NUMBA_DISABLE_JIT=1 returns the Python function
        return "uncached"
    try:
        dispatcher.enable_caching()
        return "cached"
    except RuntimeError as error:  # "cannot cache function ...: no locator available"
        first_error = error

    previous = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = fallback_cache_dir()
    try:
        dispatcher.enable_caching()
        return "cached"
    except (RuntimeError, OSError) as error:
        log.warning(
            "Numba cannot cache %s (%s; fallback %s: %s). It will compile again in every process.",
            dispatcher.py_func.__qualname__, first_error, numba.config.CACHE_DIR, error,
        )
        return "uncached"
    finally:
        numba.config.CACHE_DIR = previous


def jit(parallel: bool = False, nogil: bool = False):
    """Return a decorator that compiles a kernel in nopython mode with caching and FASTMATH.

    ``nogil=True`` releases the GIL while the compiled code runs, so calls from several Python
    threads (``threads.run_work_items``) run at the same time.
    """

    def decorate(py_func):
        options = dict(parallel=parallel, nogil=nogil, fastmath=set(FASTMATH), cache=False)
        dispatcher = numba.njit(**options)(py_func)
        enable_cache(dispatcher)
        return dispatcher

    return decorate
