"""Attention kernels side by side: minitx (Numba) against the NumPy reference and torch.

Run from the repository root:

    python benchmarks/attention.py                 # T = 1024, 4096, 8192
    python benchmarks/attention.py --T 1024 --repeats 3

Every case uses float32, B * NH = 8 heads (B = 1, NH = 8) and hs = 64. Cases:

- forward: causal attention. Baselines: the NumPy reference (materialises (T, T) scores),
  the row kernel (the first rung of the kernel ladder) and torch's scaled_dot_product_attention.
- backward: the gradients of q, k and v given dout. Baseline: torch SDPA's backward.
- self-extend: the forward with Self-Extend (group 8, window 512). Baseline: the two-matrix
  method of Jin et al. 2024 (arXiv 2401.01325) written in torch: both score matrices, merged
  with torch.where, then one softmax.
- decode-1 and decode-64: 1 or 64 new queries against a cache of T keys (q_start = T - Tq).

"time / X" columns are minitx's time divided by X's time, so below 1 means minitx is faster.
Peak extra memory is the RSS peak during minitx's first call in a fresh process minus the RSS
before it, less the bytes of its outputs (out and lse, or dq, dk and dv). The NumPy reference and the torch two-matrix method are skipped at T = 8192,
where their (T, T) matrices would need several GiB.
The last lines time compilation in fresh subprocesses: every kernel's first-ever call (empty
cache) and, with a warm cache, ``import minitx`` plus the first ``attend``.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import MiB, describe_machine, format_table, median_seconds, torch

from minitx.attention import api, kernels, reference

BH, NH, hs = 8, 8, 64
GROUP, WINDOW = 8, 512
NUMPY_MAX_T = 4096


def make_inputs(T, Tq, seed=0):
    rng = np.random.default_rng(seed)
    draw = lambda rows: rng.standard_normal((1, NH, rows, hs)).astype(np.float32)  # (B, NH, T, hs)
    return {"q": draw(Tq), "k": draw(T), "v": draw(T), "q_far": draw(Tq), "k_far": draw(T), "dout": draw(Tq)}


def torch_inputs(x, names, grad=False):
    return [torch.from_numpy(x[name]).requires_grad_(grad) for name in names]


def torch_self_extend(q, k, v, q_far, k_far, near, causal):
    """Compute Self-Extend with two full score matrices, merged by distance, and one softmax."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    near_scores = (q @ k.transpose(-1, -2)) * scale  # (B, NH, T, T)
    far_scores = (q_far @ k_far.transpose(-1, -2)) * scale
    scores = torch.where(near, near_scores, far_scores).masked_fill(~causal, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v  # (B, NH, T, T) @ (B, NH, T, hs) -> (B, NH, T, hs)


def cell_ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def cell_ratio(ours, other):
    return "-" if other is None else f"{ours / other:.2f}"


MEMORY_SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, {benchmarks!r})
from common import peak_extra_bytes
from minitx.attention import api

case, T, Tq = {case!r}, {T}, {Tq}
small = [np.ones((1, 1, n, 64), np.float32) for n in (8, 8, 8)]
api.backward(small[0], *small, *api.forward(*small))  # load the compiled kernels first
api.forward(*small, *small[:2], window=2)
rng = np.random.default_rng(0)
q, dout, q_far = (rng.standard_normal((1, 8, Tq, 64)).astype(np.float32) for _ in range(3))
k, v, k_far = (rng.standard_normal((1, 8, T, 64)).astype(np.float32) for _ in range(3))
if case == "forward":
    call, outputs = (lambda: api.forward(q, k, v, q_start=T - Tq)), q.nbytes * 65 // 64
elif case == "self-extend":
    call, outputs = (lambda: api.forward(q, k, v, q_far, k_far, window=512)), q.nbytes * 65 // 64
else:
    out, lse = api.forward(q, k, v)
    call, outputs = (lambda: api.backward(dout, q, k, v, out, lse)), q.nbytes + 2 * k.nbytes
extra = peak_extra_bytes(call)
print("unavailable" if extra is None else extra - outputs)
"""


def peak_extra_mib(case, T, Tq):
    """Return minitx's peak extra memory (MiB, outputs excluded) for one call, in a fresh process.

    A fresh process matters: once freed, the allocator keeps memory resident, and later calls
    in the same process reuse it without raising the RSS.
    """
    code = MEMORY_SCRIPT.format(benchmarks=os.path.dirname(os.path.abspath(__file__)), case=case, T=T, Tq=Tq)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    extra = result.stdout.strip().splitlines()[-1]
    if extra == "unavailable":  # peak RSS cannot be reset outside Linux
        return "-"
    return f"{max(0, int(extra)) / MiB:.1f}"  # below 0: the outputs reused pages already resident


def run_case(name, T, Tq, flops, ours, numpy_call, torch_call, rows_call, memory_case, repeats):
    ours_s = median_seconds(ours, repeats)
    extra_mib = peak_extra_mib(memory_case, T, Tq) if memory_case else "-"
    numpy_s = median_seconds(numpy_call, max(1, repeats // 2)) if numpy_call else None
    torch_s = median_seconds(torch_call, repeats) if torch_call else None
    rows_s = median_seconds(rows_call, max(1, repeats // 2)) if rows_call else None
    row = [
        name, str(T), str(Tq), cell_ms(ours_s), f"{flops / ours_s / 1e9:.1f}",
        cell_ms(numpy_s), cell_ratio(ours_s, numpy_s), cell_ms(rows_s), cell_ratio(ours_s, rows_s),
        cell_ms(torch_s), cell_ratio(ours_s, torch_s), extra_mib,
    ]
    print(" | ".join(row), flush=True)  # progress; the full table follows at the end
    return row, ours_s


def bench_length(T, repeats):
    rows = []
    with_numpy = T <= NUMPY_MAX_T
    x = make_inputs(T, T)
    q, k, v, q_far, k_far, dout = (x[n] for n in ("q", "k", "v", "q_far", "k_far", "dout"))

    # forward
    flops = 2.0 * T * T * hs * BH  # 4 hs flops per visible (i, j) pair, T^2 / 2 pairs
    flat = lambda a: a.reshape(BH, -1, hs)  # (1, NH, T, hs) -> (BH, T, hs)
    out3, lse2 = np.empty((BH, T, hs), np.float32), np.empty((BH, T), np.float32)
    rows_call = lambda: kernels.attention_forward_rows(flat(q), flat(k), flat(v), flat(q), flat(k), -1, True, 0, out3, lse2)
    torch_call = None
    if torch is not None:
        tq, tk, tv = torch_inputs(x, ("q", "k", "v"))
        torch_call = lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
    row, plain_s = run_case(
        "forward", T, T, flops, lambda: api.forward(q, k, v),
        (lambda: reference.attention_forward(q, k, v)) if with_numpy else None,
        torch_call, rows_call, "forward", repeats,
    )
    rows.append(row)

    # backward
    out, lse = api.forward(q, k, v)
    torch_call = None
    if torch is not None:
        tq, tk, tv = torch_inputs(x, ("q", "k", "v"), grad=True)
        t_out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
        t_dout = torch.from_numpy(dout)
        torch_call = lambda: torch.autograd.grad(t_out, (tq, tk, tv), t_dout, retain_graph=True)
    row, _ = run_case(
        "backward", T, T, 2.5 * flops, lambda: api.backward(dout, q, k, v, out, lse),
        (lambda: reference.attention_backward(dout, q, k, v, out, lse)) if with_numpy else None,
        torch_call, None, "backward", repeats,
    )
    rows.append(row)

    # Self-Extend forward
    torch_call = None
    if torch is not None and with_numpy:
        tq, tk, tv, tqf, tkf = torch_inputs(x, ("q", "k", "v", "q_far", "k_far"))
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        near, causal = (i - j) < WINDOW, j <= i
        torch_call = lambda: torch_self_extend(tq, tk, tv, tqf, tkf, near, causal)
    se = dict(q_far=q_far, k_far=k_far, window=WINDOW)
    row, se_s = run_case(
        f"self-extend W={WINDOW}", T, T, flops, lambda: api.forward(q, k, v, **se),
        (lambda: reference.attention_forward(q, k, v, **se)) if with_numpy else None,
        torch_call, None, "self-extend", repeats,
    )
    row.append(f"{se_s / plain_s:.2f}")
    rows.append(row)

    # decoding against a cache of T keys
    for Tq in (1, 64):
        xq = make_inputs(T, Tq, seed=1)
        qd = xq["q"]
        torch_call = None
        if torch is not None:
            tq = torch.from_numpy(qd)
            tk, tv = torch_inputs(x, ("k", "v"))
            mask = torch.arange(T)[None, :] <= (T - Tq + torch.arange(Tq))[:, None]  # (Tq, T)
            torch_call = lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask)
        row, _ = run_case(
            f"decode-{Tq}", T, Tq, 4.0 * Tq * T * hs * BH, lambda: api.forward(qd, k, v, q_start=T - Tq),
            (lambda: reference.attention_forward(qd, k, v, q_start=T - Tq)) if with_numpy else None,
            torch_call, None, "forward" if Tq > 1 else None, repeats * 10,
        )
        rows.append(row)
    return rows


def time_subprocess(code, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def bench_compile():
    """Return (first-ever float32, first-ever float32 + float64, warm import + attend) seconds."""
    warmup = "import minitx; print(minitx.warmup(dtypes={dtypes}))"
    first_attend = (
        "import time; start = time.perf_counter()\n"
        "import numpy as np, minitx\n"
        "q = np.ones((1, 2, 16, 8), np.float32)\n"
        "minitx.attend(q, q, q)\n"
        "print(time.perf_counter() - start)\n"
    )
    with tempfile.TemporaryDirectory() as cache_dir:
        cold32 = time_subprocess(warmup.format(dtypes=("float32",)), cache_dir)
    with tempfile.TemporaryDirectory() as cache_dir:
        cold_all = time_subprocess(warmup.format(dtypes=("float32", "float64")), cache_dir)
        warm = min(time_subprocess(first_attend, cache_dir) for _ in range(3))
    return cold32, cold_all, warm


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[1024, 4096, 8192], help="sequence lengths")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case; the median is shown")
    parser.add_argument("--skip-compile", action="store_true", help="skip the compile-time subprocesses")
    args = parser.parse_args()
    if torch is not None:
        torch.set_num_threads(os.cpu_count())

    print(describe_machine())
    print(f"float32, B * NH = {BH}, hs = {hs}; Self-Extend group {GROUP}, window {WINDOW}\n")
    api.forward(*(np.ones((1, 1, 4, 4), np.float32),) * 3)  # compile before timing
    header = ["case", "T", "Tq", "minitx ms", "GFLOP/s", "numpy ms", "time / numpy", "rows ms",
              "time / rows", "torch ms", "time / torch", "peak extra MiB", "time / own causal"]
    rows = []
    for T in args.T:
        rows += bench_length(T, args.repeats)
    rows = [row + [""] * (len(header) - len(row)) for row in rows]
    print(format_table(header, rows))

    if not args.skip_compile:
        started = time.perf_counter()
        cold32, cold_all, warm = bench_compile()
        print(f"\nfirst-ever call of every kernel, empty cache: float32 {cold32:.1f} s, "
              f"float32 + float64 {cold_all:.1f} s")
        print(f"warm cache, import minitx + first attend: {warm:.2f} s "
              f"(compile section took {time.perf_counter() - started:.0f} s)")
    print("\n" + describe_machine())


if __name__ == "__main__":
    main()
