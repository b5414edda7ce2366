"""Threads and dispatch: results bit-identical for any thread count, the thread settings and
their validation, the ISA choice at import (LOGITOPS_ISA), the GIL released around kernels,
and concurrent calls from several Python threads."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from _helpers import DTYPES, dtype_id
from _tolerances import ISA_AGREEMENT_F32

import logitops as lo
from logitops import _core

# The directory holding the logitops package under test (a dev build stages symlinks there).
PKG_DIR = str(Path(lo.__file__).parent.parent)


@pytest.fixture
def restore_threads():
    before = lo.get_num_threads()
    yield
    lo.set_num_threads(before)


def bits(a: np.ndarray) -> np.ndarray:
    """The bit patterns of a float array (NaN payloads and signed zeros included)."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def all_results(x: np.ndarray, g_rows: np.ndarray, g: np.ndarray, x_elem: np.ndarray, g_elem: np.ndarray):
    return {
        "logsumexp": lo.logsumexp(x),
        "logsumexp_axis0": lo.logsumexp(x, axis=0),
        "logsumexp_all": np.asarray(lo.logsumexp(x, axis=None)),
        "log_softmax": lo.log_softmax(x),
        "softmax": lo.softmax(x),
        "logsumexp_backward": lo.logsumexp_backward(g_rows, x),
        "log_softmax_backward": lo.log_softmax_backward(g, x),
        "softmax_backward": lo.softmax_backward(g, x),
        "log_sigmoid": lo.log_sigmoid(x_elem),
        "sigmoid": lo.sigmoid(x_elem),
        "log_sigmoid_backward": lo.log_sigmoid_backward(g_elem, x_elem),
        "sigmoid_backward": lo.sigmoid_backward(g_elem, x_elem),
    }


def big_inputs(dtype, seed=0):
    """Large enough that every kernel is cut into many chunks (>32k elements of work each)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((1024, 1000)) * 4).astype(dtype)
    x[5, 7] = np.nan  # one NaN row among the chunks
    x[9] = -np.inf
    g_rows = rng.standard_normal(1024).astype(dtype)
    g = rng.standard_normal((1024, 1000)).astype(dtype)
    x_elem = (rng.standard_normal(1_000_003) * 20).astype(dtype)
    g_elem = rng.standard_normal(1_000_003).astype(dtype)
    return x, g_rows, g, x_elem, g_elem


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_bit_identical_at_1_and_2_threads(dtype, restore_threads):
    inputs = big_inputs(dtype)
    lo.set_num_threads(1)
    one = all_results(*inputs)
    lo.set_num_threads(2)
    two = all_results(*inputs)
    lo.set_num_threads(3)  # more threads than cores: still the same chunks
    three = all_results(*inputs)
    for name in one:
        np.testing.assert_array_equal(bits(one[name]), bits(two[name]), err_msg=name)
        np.testing.assert_array_equal(bits(one[name]), bits(three[name]), err_msg=name)


def _thread_affinities() -> dict[int, set[int]]:
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            out[int(tid)] = os.sched_getaffinity(int(tid))
        except OSError:  # a thread that ended meanwhile
            pass
    return out


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and 2 CPUs"
)
def test_calls_after_the_process_slept(restore_threads):
    """After the whole process slept, a worker woken for a job moves itself off the caller's CPU for
    that job (cpp/parallel.cpp): results stay bit-identical to one thread's, and afterwards every
    thread's CPU affinity is what it was (the worker's given back, nobody else's touched)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2048, 1000)).astype(np.float32)
    y = rng.integers(0, 1000, 2048)
    lo.set_num_threads(1)
    ref = [bits(a) for a in lo.cross_entropy_value_and_grad(x, y, reduction="none")]
    lo.set_num_threads(2)
    lo.cross_entropy(x, y)  # the worker exists from here on
    allowed = os.sched_getaffinity(0)
    before = _thread_affinities()
    for _ in range(4):
        time.sleep(0.06)  # long past the workers' idle spin: they sleep, and so does this thread
        got = lo.cross_entropy_value_and_grad(x, y, reduction="none")
        for r, g in zip(ref, got):
            np.testing.assert_array_equal(r, bits(g))
        time.sleep(0.01)  # a worker gives its affinity back after its last chunk
        for tid, cpus in _thread_affinities().items():
            assert cpus == before.get(tid, allowed), f"thread {tid}: {cpus} (was {before.get(tid, allowed)})"


def test_thread_count_settings(restore_threads):
    lo.set_num_threads(1)
    assert lo.get_num_threads() == 1
    lo.set_num_threads(2)
    assert lo.get_num_threads() == 2
    lo.set_num_threads(np.int64(3))
    assert lo.get_num_threads() == 3


@pytest.mark.parametrize("bad", [0, -1, -100])
def test_set_num_threads_rejects_non_positive(bad, restore_threads):
    before = lo.get_num_threads()
    with pytest.raises(ValueError, match="n must be >= 1"):
        lo.set_num_threads(bad)
    assert lo.get_num_threads() == before


@pytest.mark.parametrize("bad", [1.5, 2.0, "2", None, True, [2]])
def test_set_num_threads_rejects_non_integers(bad, restore_threads):
    with pytest.raises(TypeError, match="n must be an int"):
        lo.set_num_threads(bad)


def test_isa_names_the_active_path(isa):
    assert lo.isa() == isa  # conftest switched to it
    with pytest.raises(ValueError, match=r"unknown instruction set 'bogus' \(known: (.*)\)") as err:
        _core._set_isa("bogus")
    known = str(err.value).split("(known: ")[1].rstrip(")").split(", ")  # cpp/isa_list.h's names
    assert known[0] == "scalar" and len(set(known)) == len(known)
    assert set(_core.available_isas()) <= set(known)
    assert "scalar" in _core.available_isas()
    assert lo.isa() == isa


def test_isas_agree_closely(rng):
    """Both paths compute the same functions (not bit for bit: FMA vs none)."""
    x = (rng.standard_normal((50, 300)) * 5).astype(np.float32)
    results = {}
    for name in _core.available_isas():
        _core._set_isa(name)
        results[name] = (lo.log_softmax(x), lo.sigmoid(x))
    ref = results["scalar"]
    for name, res in results.items():
        for a, b in zip(res, ref):
            np.testing.assert_allclose(a, b, *ISA_AGREEMENT_F32, err_msg=name)


# ----------------------------------------------------------------------------- subprocesses


def run_python(code: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGITOPS_")}
    env.update(env_vars)
    if PKG_DIR:
        env["PYTHONPATH"] = PKG_DIR + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_default_isa_is_the_best_available():
    r = run_python("import logitops as lo; print(lo.isa())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == _core.available_isas()[-1]


def test_env_forces_scalar():
    code = ("import numpy as np, logitops as lo; print(lo.isa());"
            "print(float(lo.logsumexp(np.array([0.0, 0.0]))))")
    r = run_python(code, LOGITOPS_ISA="scalar")
    assert r.returncode == 0, r.stderr
    isa, val = r.stdout.split()
    assert isa == "scalar"
    assert float(val) == pytest.approx(np.log(2.0), rel=1e-15)


@pytest.mark.skipif("avx2" not in _core.available_isas(), reason="CPU without AVX2+FMA")
def test_env_selects_avx2():
    r = run_python("import logitops as lo; print(lo.isa())", LOGITOPS_ISA="avx2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "avx2"


def test_env_unknown_isa_fails_import_clearly():
    r = run_python("import logitops", LOGITOPS_ISA="bogus")
    assert r.returncode != 0
    assert "ImportError" in r.stderr
    assert "LOGITOPS_ISA" in r.stderr and "bogus" in r.stderr
    assert "did you forget to build" not in r.stderr  # not mistaken for a missing build


@pytest.mark.parametrize("value,expected", [("1", 1), ("3", 3), ("0", None), ("-2", None), ("abc", None)])
def test_env_num_threads(value, expected):
    code = ("import numpy as np, logitops as lo; n = lo.get_num_threads();"
            "x = np.random.default_rng(0).standard_normal((512, 1000));"
            "a = lo.softmax(x); lo.set_num_threads(1); b = lo.softmax(x);"
            "print(n, int((a == b).all()))")
    r = run_python(code, LOGITOPS_NUM_THREADS=value)
    assert r.returncode == 0, r.stderr
    n, same = r.stdout.split()
    # Invalid values fall back to the number of CPUs.
    assert int(n) == (expected if expected is not None else os.cpu_count())
    assert same == "1"


# ----------------------------------------------------------------------------- the GIL


GIL_CALLS = {
    "logsumexp": lambda x, g: lo.logsumexp(x),
    "softmax": lambda x, g: lo.softmax(x),
    "log_softmax_backward": lambda x, g: lo.log_softmax_backward(g, x),
    "log_sigmoid": lambda x, g: lo.log_sigmoid(x),
    "sigmoid_backward": lambda x, g: lo.sigmoid_backward(g, x),
}


@pytest.mark.parametrize("name", list(GIL_CALLS))
def test_python_thread_keeps_counting_while_kernel_runs(name, restore_threads):
    """A pure-Python thread (here the main thread) counts while a worker thread runs a large
    kernel. The switch interval is made huge, so a thread holding the GIL never hands it over
    until it blocks: if the kernel kept the GIL, the main thread could not run at all until the
    worker finished, and would count nothing. (time.sleep(0) in the loop is the counter's own
    voluntary release, so the worker can take the GIL back when its kernel is done.)"""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 2000))
    g = rng.standard_normal((1000, 2000))
    lo.set_num_threads(1)
    started = threading.Event()
    state = {"done": False, "counted": False}

    def worker():
        started.set()
        # Several calls: on a loaded machine the main thread may not be scheduled during one.
        # Between calls the worker never yields the GIL (huge switch interval), so only a
        # kernel that releases it lets the main thread count.
        for _ in range(20):
            GIL_CALLS[name](x, g)
            if state["counted"]:
                break
        state["done"] = True

    count = 0
    old = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        t = threading.Thread(target=worker)
        t.start()
        started.wait()
        while not state["done"]:
            count += 1
            state["counted"] = True
            time.sleep(0)
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert count > 0, f"{name} held the GIL for its whole run"


# ----------------------------------------------------------------------------- concurrency


def test_concurrent_calls_match_serial(restore_threads):
    lo.set_num_threads(2)
    jobs = [big_inputs(np.float32 if i % 2 else np.float64, seed=i) for i in range(4)]
    jobs = [tuple(a[: max(1, a.shape[0] // 4)] for a in job) for job in jobs]  # keep it quick
    serial = [all_results(*job) for job in jobs]
    with ThreadPoolExecutor(max_workers=4) as ex:
        for _ in range(3):
            futures = [ex.submit(all_results, *job) for job in jobs]
            for want, fut in zip(serial, futures):
                got = fut.result()
                for name in want:
                    np.testing.assert_array_equal(bits(got[name]), bits(want[name]), err_msg=name)
