"""Helpers shared by the benchmarks: timing, peak memory, hardware description, optional torch.

Times are medians of repeated calls after one untimed call, so compilation and first-touch
page faults are not counted. Peak memory is the resident set size (RSS): on Linux,
writing 5 to /proc/self/clear_refs resets the peak (VmHWM) to the current RSS, so the peak
after a call minus the RSS before it is the extra memory that call needed. Numba allocates
outside Python's allocators, so tracemalloc would miss the kernels' buffers.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time

import numba
import numpy as np

try:
    import torch
except ImportError:  # torch is an optional baseline, never a dependency of minitx
    torch = None

MiB = 2**20


def median_seconds(call, repeats: int) -> float:
    """Return the median wall time of ``repeats`` calls, after one untimed warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_extra_bytes(call) -> int | None:
    """Return the peak RSS reached during ``call()`` minus the RSS before it; None off Linux."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current RSS
        before = _status_kib("VmRSS")
    except OSError:
        return None
    result = call()
    peak = _status_kib("VmHWM")
    del result
    return (peak - before) * 1024


def cpu_model() -> str:
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in output.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def describe_machine() -> str:
    """Return one line with the CPU, core count, load average and library versions."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    torch_version = torch.__version__ if torch is not None else "not installed"
    return (
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {load}; "
        f"Python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
        f"torch {torch_version}; minitx threads {numba.get_num_threads()}"
    )


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Return a Markdown table with columns padded to their widest entry."""
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule] + [line(row) for row in rows])
