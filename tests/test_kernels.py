"""Compiled kernels: each equals the NumPy reference, plus threads, caching and warm-up.

Tolerances are 1e-10 for float64 and 1e-5 for float32, relative and absolute. The blocked
kernels work on 128 x 128 tiles, so sizes up to 300 cross two tile edges and end inside a
tile. Under NUMBA_DISABLE_JIT=1 the kernels run as plain Python, so the property tests draw
smaller sizes and fewer examples there; the tile edges are then covered by the compiled runs.
"""

import os
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitx
from conftest import assert_close
from minitx import attend
from minitx.attention import api, kernels, reference
from minitx.attention.compile import enable_cache, fallback_cache_dir
from minitx.attention.flash_forward import flash_attention_forward
from minitx.attention.tiles import EXP_MIN_ARGUMENT, exp_shifted, matmul_nn, matmul_nt
from minitx.positions import SelfExtend
from minitx.threads import max_num_threads, run_work_items

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-5}
JIT_DISABLED = bool(numba.config.DISABLE_JIT)
MAX_T = 12 if JIT_DISABLED else 300
EXAMPLES = 8 if JIT_DISABLED else 40


def random_inputs(rng, B, NH, Tq, Tk, hs, dtype, window):
    """Return q, k, v, q_far, k_far (far copies None without a window), shapes (B, NH, T, hs)."""
    draw = lambda T: rng.standard_normal((B, NH, T, hs)).astype(dtype)
    q, k, v = draw(Tq), draw(Tk), draw(Tk)
    if window is None:
        return q, k, v, None, None
    return q, k, v, draw(Tq), draw(Tk)


shapes = dict(
    B=st.integers(1, 2),
    NH=st.integers(1, 3),
    Tk=st.integers(1, MAX_T),
    Tq_fraction=st.floats(0.0, 1.0),
    hs=st.integers(1, 20),
    dtype=st.sampled_from([np.float32, np.float64]),
    window=st.one_of(st.none(), st.integers(1, MAX_T + 2)),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)


def draw_case(B, NH, Tk, Tq_fraction, hs, dtype, window, causal, seed):
    Tq = max(1, round(Tq_fraction * Tk))
    q_start = Tk - Tq if causal else 0  # a shorter q contains the last positions, as in decoding
    rng = np.random.default_rng(seed)
    q, k, v, q_far, k_far = random_inputs(rng, B, NH, Tq, Tk, hs, dtype, window)
    args = dict(q_far=q_far, k_far=k_far, window=window, causal=causal, q_start=q_start)
    return q, k, v, args


@settings(max_examples=EXAMPLES, deadline=None)
@given(**shapes)
def test_flash_forward_equals_reference(B, NH, Tk, Tq_fraction, hs, dtype, window, causal, seed):
    q, k, v, args = draw_case(B, NH, Tk, Tq_fraction, hs, dtype, window, causal, seed)
    expected_out, expected_lse = reference.attention_forward(q, k, v, **args)
    out, lse = api.forward(q, k, v, **args, backend="numba")
    tol = TOLERANCE[dtype]
    assert out.dtype == dtype
    assert lse.dtype == dtype
    assert_close(out, expected_out, rtol=tol, atol=tol, what="out")
    assert_close(lse, expected_lse, rtol=tol, atol=tol, what="lse")


@settings(max_examples=EXAMPLES, deadline=None)
@given(**shapes)
def test_flash_backward_equals_reference(B, NH, Tk, Tq_fraction, hs, dtype, window, causal, seed):
    q, k, v, args = draw_case(B, NH, Tk, Tq_fraction, hs, dtype, window, causal, seed)
    dout = np.random.default_rng(seed + 1).standard_normal(q.shape).astype(dtype)
    out, lse = reference.attention_forward(q, k, v, **args)
    expected = reference.attention_backward(dout, q, k, v, out, lse, **args)
    got = api.backward(dout, q, k, v, out, lse, **args, backend="numba")
    tol = TOLERANCE[dtype]
    for name, g, e in zip(("dq", "dk", "dv", "dq_far", "dk_far"), got, expected):
        if e is None:
            assert g is None, f"{name} should be None without a window"
            continue
        assert g.dtype == dtype
        assert_close(g, e, rtol=tol, atol=tol, what=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_kernel_equals_reference(rng, dtype):
    B, NH, T, hs = 2, 3, 7, 8
    q, k, v, q_far, k_far = random_inputs(rng, B, NH, T, T, hs, dtype, window=3)
    expected_out, expected_lse = reference.attention_forward(q, k, v, q_far, k_far, window=3)
    flat = lambda a: np.ascontiguousarray(a.reshape(B * NH, T, hs))  # (B, NH, T, hs) -> (BH, T, hs)
    out, lse = np.empty((B * NH, T, hs), dtype), np.empty((B * NH, T), dtype)
    kernels.attention_forward_rows(flat(q), flat(k), flat(v), flat(q_far), flat(k_far), 3, True, 0, out, lse)
    tol = TOLERANCE[dtype]
    assert_close(out.reshape(B, NH, T, hs), expected_out, rtol=tol, atol=tol, what="out")
    assert_close(lse.reshape(B, NH, T), expected_lse, rtol=tol, atol=tol, what="lse")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flash_accepts_non_contiguous_inputs(rng, dtype):
    B, NH, T, hs = 2, 3, 9 if JIT_DISABLED else 140, 8
    base = rng.standard_normal((B, T, NH, 2 * hs)).astype(dtype)  # (B, T, NH, 2hs)
    q = base[..., :hs].transpose(0, 2, 1, 3)  # (B, NH, T, hs) strided view
    k = base[..., hs:].transpose(0, 2, 1, 3)
    v = base[..., ::2].transpose(0, 2, 1, 3)
    assert not (q.flags.c_contiguous or k.flags.c_contiguous or v.flags.c_contiguous)
    dout = rng.standard_normal((B, NH, T, hs)).astype(dtype)[..., ::-1]
    expected_out, lse = reference.attention_forward(q, k, v)
    out, _ = api.forward(q, k, v)
    tol = TOLERANCE[dtype]
    assert_close(out, expected_out, rtol=tol, atol=tol, what="out")
    expected = reference.attention_backward(dout, q, k, v, expected_out, lse)
    got = api.backward(dout, q, k, v, expected_out, lse[..., :])
    for name, g, e in zip(("dq", "dk", "dv"), got, expected):
        assert_close(g, e, rtol=tol, atol=tol, what=name)


@pytest.mark.parametrize("Tq", [1, 5])
def test_decode_rows_equal_last_rows_of_full_forward(rng, Tq):
    """One token (Tq = 1) or a chunk (Tq = 5) against a cache equals the full forward's rows."""
    B, NH, T, hs = 2, 3, 11 if JIT_DISABLED else 133, 8
    q, k, v, q_far, k_far = random_inputs(rng, B, NH, T, T, hs, np.float64, window=6)
    full, _ = api.forward(q, k, v, q_far, k_far, window=6)
    tail, _ = api.forward(q[:, :, -Tq:], k, v, q_far[:, :, -Tq:], k_far, window=6, q_start=T - Tq)
    assert_close(tail, full[:, :, -Tq:], rtol=1e-12, atol=1e-12, what="api.forward")

    # api.forward sends very short queries to the row kernel; check the blocked kernel too
    flat = lambda a: np.ascontiguousarray(a).reshape(B * NH, -1, hs)  # (B, NH, T, hs) -> (BH, T, hs)
    out, lse = np.empty((B * NH, Tq, hs)), np.empty((B * NH, Tq))
    flash_attention_forward(flat(q[:, :, -Tq:]), flat(k), flat(v), flat(q_far[:, :, -Tq:]), flat(k_far),
                            6, True, T - Tq, out, lse)
    assert_close(out.reshape(B, NH, Tq, hs), full[:, :, -Tq:], rtol=1e-12, atol=1e-12, what="blocked kernel")


@pytest.mark.parametrize("G, W", [(3, 5), (4, 10), (5, 7)])
def test_self_extend_kernel_with_group_not_dividing_window(rng, G, W):
    B, NH, T, hs = 1, 2, 13 if JIT_DISABLED else 141, 6
    q, k, v, _, _ = random_inputs(rng, B, NH, T, T, hs, np.float64, None)
    se = SelfExtend(hs, group_size=G, window=W)
    expected = attend(q, k, v, se, backend="numpy")
    assert_close(attend(q, k, v, se, backend="numba"), expected, rtol=1e-10, atol=1e-10)


def test_model_gradients_match_numpy_backend():
    """The training step runs the compiled backward; its gradients equal the reference's."""
    config = minitx.ModelConfig(
        vocab_size=11, context_length=9, n_layer=2, n_head=2, n_embd=12, position="self-extend",
        group_size=2, window=3, dtype="float64",
    )
    tokens = np.random.default_rng(5).integers(0, 11, size=(2, 9))
    targets = np.roll(tokens, -1, axis=1)
    grads = {}
    for backend in ("numpy", "numba"):
        model = minitx.TransformerLM(config, seed=1).set_backend(backend)
        model.forward(tokens, targets)
        grads[backend] = model.backward()
    for name, expected in grads["numpy"].items():
        assert_close(grads["numba"][name], expected, rtol=1e-10, atol=1e-12, what=name)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 3e-6), (np.float64, 1e-14)])
def test_exp_shifted_matches_numpy_exp(dtype, tol):
    scores = np.linspace(-90.0, 0.0, 4 * 64).reshape(4, 64).astype(dtype)
    scores[1, 3] = -np.inf
    shift = np.array([0.0, 0.0, -1.5, 0.0], dtype)
    scores[2] += shift[2]
    argument = scores.astype(np.float64) - shift[:, None]
    expected = np.exp(argument)
    got = scores.copy()
    exp_shifted(got, 4, 64, shift)
    assert got[1, 3] == 0.0
    representable = argument >= EXP_MIN_ARGUMENT  # below it the result is exactly 0
    assert (got[~representable] == 0.0).all()
    assert_close(got[representable] / expected[representable], np.ones(representable.sum()), 0, tol)


def test_matmul_nt_adds_product_for_odd_rows(rng):
    A = rng.standard_normal((7, 5))
    B = rng.standard_normal((8, 5))
    C = rng.standard_normal((7, 8))
    expected = C + A @ B.T
    matmul_nt(A, B, C, 7, 8, 5)
    assert_close(C, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n_rows", [1, 4, 7])
def test_matmul_nn_adds_product_inside_larger_arrays(rng, n_rows):
    """Rows, columns and inner entries past the given sizes are neither read nor written."""
    A = rng.standard_normal((9, 12))
    B = rng.standard_normal((10, 6))
    C = rng.standard_normal((8, 6))
    expected = C.copy()
    expected[:n_rows, :5] += A[:n_rows, :8] @ B[:8, :5]
    matmul_nn(A, B, C, n_rows, 5, 8)
    assert_close(C, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("n_items", [1, 3, 37])
def test_run_work_items_covers_each_item_once(n_threads, n_items):
    before = minitx.get_num_threads()
    counts = np.zeros(n_items, np.int64)

    def kernel(counts, start, stop):
        counts[start:stop] += 1

    try:
        minitx.set_num_threads(min(n_threads, max_num_threads()))
        run_work_items(kernel, (counts,), n_items)
    finally:
        minitx.set_num_threads(before)
    assert (counts == 1).all(), f"items run {counts.tolist()} times, expected once each"


def test_run_work_items_raises_kernel_error():
    def kernel(start, stop):
        if start <= 2 < stop:
            raise RuntimeError("item 2 failed")

    with pytest.raises(RuntimeError, match="item 2 failed"):
        run_work_items(kernel, (), 5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_run_work_items_works_after_fork():
    """A forked child must not reuse the parent's executors, whose threads it did not inherit."""
    code = (
        "import os\n"
        "import minitx\n"
        "from minitx.threads import run_work_items\n"
        "minitx.set_num_threads(min(2, minitx.threads.max_num_threads()))\n"
        "run_work_items(lambda start, stop: None, (), 8)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    run_work_items(lambda start, stop: None, (), 8)\n"
        "    os._exit(0)\n"
        "print(os.waitpid(pid, 0)[1])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0", f"child exit status {result.stdout.strip()}, expected 0"


def test_set_num_threads_sets_kernel_threads():
    before = minitx.get_num_threads()
    try:
        minitx.set_num_threads(1)
        assert minitx.get_num_threads() == 1
        q = np.random.default_rng(0).standard_normal((1, 2, 5, 4))
        assert_close(attend(q, q, q), attend(q, q, q, backend="numpy"), 1e-12, 1e-12)
    finally:
        minitx.set_num_threads(before)


@pytest.mark.parametrize("n, error", [(0, ValueError), (10**6, ValueError), (1.5, TypeError), (True, TypeError)])
def test_set_num_threads_rejects_bad_counts(n, error):
    with pytest.raises(error, match="n must"):
        minitx.set_num_threads(n)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("N", [1, 2, 7])
def test_matmul_by_rows_equals_matmul(rng, threads, N):
    if threads > minitx.threads.max_num_threads():
        pytest.skip(f"Numba was started with fewer than {threads} threads")
    a = rng.standard_normal((N, 5)).astype(np.float32)
    b = rng.standard_normal((5, 3)).astype(np.float32)
    before = minitx.get_num_threads()
    try:
        minitx.set_num_threads(threads)
        out = minitx.threads.matmul_by_rows(a, b)
    finally:
        minitx.set_num_threads(before)
    assert out.dtype == np.float32
    assert_close(out, a @ b, 1e-6, 1e-6)


def test_run_in_parallel_returns_results_in_order():
    results = minitx.threads.run_in_parallel(lambda: 1, lambda: 2, lambda: 3)
    assert results == [1, 2, 3]
    assert minitx.threads.run_in_parallel() == []


def _finishes(call, seconds=60.0):
    """Run ``call`` in a daemon thread; return (finished, result) after at most ``seconds``."""
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("result", call()), daemon=True)
    worker.start()
    worker.join(seconds)
    return not worker.is_alive(), box.get("result")


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_nested_parallel_work_finishes(rng, n_tasks):
    """Tasks that use the pool themselves run inline there instead of waiting on it for ever."""
    if minitx.threads.max_num_threads() < 2:
        pytest.skip("needs 2 Numba threads")
    a = rng.standard_normal((64, 32))
    b = rng.standard_normal((32, 16))
    q = rng.standard_normal((1, 2, 70, 8))
    before = minitx.get_num_threads()
    try:
        minitx.set_num_threads(2)
        finished, results = _finishes(lambda: minitx.threads.run_in_parallel(
            *[lambda: minitx.threads.matmul_by_rows(a, b)] * n_tasks,
            *[lambda: attend(q, q, q)] * n_tasks,
        ))
    finally:
        minitx.set_num_threads(before)
    assert finished, "run_in_parallel with nested parallel work did not finish within 60 s"
    for out in results[:n_tasks]:
        assert_close(out, a @ b, 1e-12, 1e-12)
    for out in results[n_tasks:]:
        assert_close(out, attend(q, q, q, backend="numpy"), 1e-12, 1e-12)


@pytest.mark.parametrize("a_shape, b_shape", [((5,), (5, 3)), ((4, 7, 5), (5, 3)), ((4, 5), (5,)), ((4, 5), (6, 3))])
def test_matmul_by_rows_rejects_other_shapes(a_shape, b_shape):
    with pytest.raises(ValueError, match="needs 2-D a"):
        minitx.threads.matmul_by_rows(np.ones(a_shape), np.ones(b_shape))


def test_warmup_returns_seconds():
    seconds = minitx.warmup(dtypes=("float64",))
    assert isinstance(seconds, float) and seconds >= 0.0


def test_warmup_rejects_unknown_dtype():
    with pytest.raises(ValueError, match="float16"):
        minitx.warmup(dtypes=("float16",))


@pytest.mark.skipif(JIT_DISABLED, reason="caching applies to compiled dispatchers only")
def test_cache_falls_back_when_no_location_is_writable(monkeypatch, tmp_path):
    def triple(x):
        return 3 * x

    dispatcher = numba.njit(triple)
    real_enable = dispatcher.enable_caching
    calls = []

    def enable_caching():
        calls.append(numba.config.CACHE_DIR)
        if len(calls) == 1:  # Numba's own search finds no writable directory
            raise RuntimeError("cannot cache function 'triple': no locator available")
        return real_enable()

    monkeypatch.setattr(dispatcher, "enable_caching", enable_caching)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert enable_cache(dispatcher) == "cached"
    assert calls[1] == fallback_cache_dir()
    assert fallback_cache_dir().startswith(str(tmp_path))
    assert dispatcher(2) == 6


@pytest.mark.skipif(JIT_DISABLED, reason="caching applies to compiled dispatchers only")
def test_cache_disabled_when_fallback_is_read_only(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file, so no directory can be created below it")

    def double(x):
        return 2 * x

    dispatcher = numba.njit(double)
    monkeypatch.setattr(dispatcher, "enable_caching", lambda: (_ for _ in ()).throw(RuntimeError("no locator")))
    monkeypatch.setattr("tempfile.tempdir", str(blocker))
    assert enable_cache(dispatcher) == "uncached"
    assert dispatcher(4) == 8


def test_import_and_attend_with_unwritable_cache_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file, so no directory can be created below it")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(blocker / "cache"))
    code = (
        "import numpy as np, minitx\n"
        "q = np.ones((1, 1, 3, 4))\n"
        "print(float(minitx.attend(q, q, q).sum()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip()) == pytest.approx(12.0)
