"""The result cache (cpp/result_cache.h): large results of calls without out= live in memory that
logitops maps and, once NumPy frees the array, keeps for the next call of about that size.

- recycled memory is not zeroed: every public function, given buffers filled with a NaN pattern,
  returns bit for bit what it returns with the cache off (and what out= receives);
- the limit bounds the idle memory, 0 turns the cache off, bad settings raise;
- arrays in use (and their views) keep their memory through empty_result_cache and new calls;
- threads allocating and freeing at once never share a buffer; a fork()ed child works, even
  when the parent's threads were inside the cache as it forked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from _api import LOSSES, call, call_kwargs, first_array, params, public_functions, split
from _helpers import LOW_DTYPES

import logitops as lo

FUNCS = public_functions()
MIN = lo.result_cache_info()["min_bytes"]
# Families whose float16/bfloat16 calls compute on float32 copies (_checks.via_float32).
VIA_FLOAT32 = ("kl_div", "sigmoid_focal_loss", "multilabel_soft_margin_loss", "symmetric_cross_entropy")
# Results NumPy allocates: linear_cross_entropy's gradients are BLAS products written into NumPy
# arrays (their page faults are nothing beside the products).
NUMPY_RESULTS = ("linear_cross_entropy",)
SHAPE = (40000, 5)  # per-sample results (40000,) of float32 are 160 kB: served by the cache too


@pytest.fixture
def cache_limit():
    """Restores the limit (and empties the cache) after the test."""
    before = lo.get_result_cache_limit()
    yield
    lo.set_result_cache_limit(before)
    lo.empty_result_cache()


def _owner(a: np.ndarray) -> object:
    """What owns a's memory: the base at the end of its chain of views (None: NumPy's own)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a.base


def _cached(a: np.ndarray) -> bool:
    return type(_owner(a)).__name__ == "PyCapsule"


def _arrays(result) -> list[np.ndarray]:
    items = result if isinstance(result, tuple) else (result,)
    return [a for a in items if isinstance(a, np.ndarray)]


def _bits(result) -> list[tuple]:
    items = result if isinstance(result, tuple) else (result,)
    return [(np.asarray(a).dtype, np.shape(a), np.asarray(a).tobytes()) for a in items]


def _variants(name: str, rng) -> list[dict]:
    base = split(name)[0]
    out = []
    for dt in (np.float32, np.float64, *LOW_DTYPES):
        if base in LOSSES:
            for red in ("none", "mean"):
                extra = {"weight": "last", "pos_weight": "last"} if "binary" in base else {"weight": True, "n_ignored": 3}
                out.append(call_kwargs(name, rng, dt, shape=SHAPE, reduction=red, **extra))
        else:
            out.append(call_kwargs(name, rng, dt, shape=SHAPE))
    return out


def _poison(sizes: list[int]) -> None:
    """Leaves an idle buffer of each of `sizes` bytes in the cache, filled with all-ones bytes (a
    NaN in every float format, unlike any NaN a kernel writes)."""
    held = [lo.sigmoid(np.zeros(n // 2, np.float16)) for n in sizes]  # all at once: distinct buffers
    for h in held:
        h.view(np.uint8)[...] = 0xFF
    del held


@pytest.mark.parametrize("name", FUNCS)
def test_recycled_poisoned_buffers_give_the_same_bits(name, rng, cache_limit):
    """Every public function, every dtype, reductions "none" and "mean": with each large result
    served from a buffer full of NaN bytes, the results equal those of the cache turned off,
    bit for bit (and out= receives the same)."""
    for kw in _variants(name, rng):
        lo.set_result_cache_limit(0)
        want = call(name, kw)
        lo.set_result_cache_limit(64 << 20)
        lo.empty_result_cache()
        sizes = [a.nbytes for a in _arrays(want) if a.nbytes >= MIN]
        _poison(sizes)
        hits = lo.result_cache_info()["hits"]
        got = call(name, kw)
        what = f"{name} {first_array(kw).dtype} {kw.get('reduction', '')}"
        assert _bits(got) == _bits(want), what
        # (the 16-bit results of the float32-copy families are NumPy's astype)
        base = split(name)[0]
        if sizes and base not in NUMPY_RESULTS and (first_array(kw).dtype.itemsize > 2 or base not in VIA_FLOAT32):
            assert lo.result_cache_info()["hits"] > hits, f"{what}: no result came from the cache"
        if "out" in params(name) and isinstance(want, (np.ndarray, tuple)):
            target = _arrays(want)[-1]
            out = np.full_like(target, np.nan)
            got_out = call(name, {**kw, "out": out})
            assert _bits(got_out) == _bits(want)
            assert _arrays(got_out)[-1] is out


def test_large_results_come_from_the_cache(rng, cache_limit):
    lo.set_result_cache_limit(64 << 20)
    lo.empty_result_cache()
    x = rng.standard_normal((512, 1024)).astype(np.float32)  # 2 MiB result
    info = lo.result_cache_info()
    a = lo.softmax(x)
    assert _cached(a) and a.flags.writeable and a.flags.c_contiguous and a.flags.aligned
    addr = a.ctypes.data
    del a
    assert lo.result_cache_info()["bytes"] >= x.nbytes
    b = lo.softmax(x)
    assert b.ctypes.data == addr  # the same memory, again
    after = lo.result_cache_info()
    assert after["hits"] == info["hits"] + 1 and after["misses"] == info["misses"] + 1
    np.testing.assert_array_equal(b, lo.softmax(x.copy()))
    big = lo.sigmoid(np.zeros(3 << 20, np.float32))  # 12 MiB: huge-page aligned
    assert big.ctypes.data % (2 << 20) == 0
    small = lo.sigmoid(np.zeros(MIN // 8, np.float32))  # below min_bytes: NumPy's own memory
    assert not _cached(small) and _owner(small) is None


def test_limit_bounds_idle_memory(cache_limit):
    lo.set_result_cache_limit(1 << 20)
    lo.empty_result_cache()
    held = [lo.sigmoid(np.zeros(150_000, np.float32)) for _ in range(12)]  # 600 kB each
    del held
    info = lo.result_cache_info()
    assert 0 < info["bytes"] <= 1 << 20 and info["buffers"] == 1
    one = lo.sigmoid(np.zeros(1 << 19, np.float32))  # 2 MiB: over the limit, never kept
    del one
    assert lo.result_cache_info()["bytes"] <= 1 << 20
    lo.set_result_cache_limit(0)  # lowering the limit frees what is beyond it at once
    assert lo.result_cache_info()["bytes"] == 0
    assert lo.get_result_cache_limit() == 0


def test_limit_zero_turns_the_cache_off(rng, cache_limit):
    lo.set_result_cache_limit(0)
    info = lo.result_cache_info()
    for _ in range(3):
        a = lo.log_softmax(rng.standard_normal((300, 400)))
        assert _owner(a) is None  # NumPy's allocator
        del a
    after = lo.result_cache_info()
    assert after["bytes"] == 0 and (after["hits"], after["misses"]) == (info["hits"], info["misses"])


def test_arrays_in_use_keep_their_memory(rng, cache_limit):
    """Neither empty_result_cache, nor a lower limit, nor later calls of the same size touch the
    memory of a live result or of a view whose array is gone."""
    lo.set_result_cache_limit(64 << 20)
    x = rng.standard_normal((400, 500))
    want = lo.softmax(x, out=np.empty_like(x))
    live = lo.softmax(x)
    view = lo.softmax(x)[100:300, 7]
    view_want = want[100:300, 7].copy()
    lo.empty_result_cache()
    lo.set_result_cache_limit(0)
    lo.set_result_cache_limit(64 << 20)
    others = [lo.sigmoid(np.full_like(x, -1e3)) for _ in range(4)]  # same size: would take a freed buffer
    for o in others:
        o[...] = np.nan
    del others
    np.testing.assert_array_equal(live, want)
    np.testing.assert_array_equal(view, view_want)
    assert _cached(view)


def test_threads_allocating_and_freeing_never_share_a_buffer(cache_limit):
    """Eight threads take and free results of a few sizes, each writing its own number into what
    it holds and checking it later, while the main thread keeps changing the limit and
    emptying the cache."""
    lo.set_result_cache_limit(8 << 20)
    errors: list[str] = []
    stop = threading.Event()
    sizes = (40_000, 70_000, 300_000, 1 << 20)

    def worker(i: int) -> None:
        try:
            held: list[tuple[np.ndarray, float]] = []
            for k in range(300):
                n = sizes[(i + k) % len(sizes)]
                a = lo.sigmoid(np.zeros(n, np.float32))
                if not (a == 0.5).all():
                    errors.append(f"thread {i}: a fresh result is wrong")
                mark = float(i * 1000 + k)
                a[...] = mark
                held.append((a, mark))
                if len(held) > 3:
                    b, m = held.pop(k % 3)
                    if not (b == m).all():
                        errors.append(f"thread {i}: a held buffer was overwritten")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"thread {i}: {type(e).__name__}: {e}")

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    k = 0
    while any(t.is_alive() for t in ts):
        if k % 3 == 2:
            lo.empty_result_cache()
        lo.set_result_cache_limit((0, 1 << 20, 8 << 20)[k % 3])
        k += 1
        time.sleep(0.001)
    for t in ts:
        t.join()
    stop.set()
    assert not errors, "\n".join(errors[:10])
    assert lo.result_cache_info()["bytes"] <= lo.get_result_cache_limit()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_child_works_while_threads_use_the_cache(rng, cache_limit):
    """fork() while two threads allocate and free results: each child (which starts with no idle
    buffers of its own) computes results equal to the parent's, through the cache, and exits
    in time (a mutex held across the fork would hang it)."""
    lo.set_result_cache_limit(64 << 20)
    x = rng.standard_normal((300, 400))
    want = lo.softmax(x, out=np.empty_like(x))
    held = lo.softmax(x)  # a live result the child inherits
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            lo.sigmoid(np.zeros(200_000, np.float32))

    ts = [threading.Thread(target=churn) for _ in range(2)]
    for t in ts:
        t.start()
    try:
        for _ in range(5):
            time.sleep(0.01)
            pid = os.fork()
            if pid == 0:  # the child: only this thread exists
                code = 1
                try:
                    idle = lo.result_cache_info()["bytes"]
                    ok = idle == 0 and all(np.array_equal(lo.softmax(x), want) for _ in range(4))
                    ok = ok and np.array_equal(held, want) and lo.result_cache_info()["hits"] > 0
                    code = 0 if ok else 2
                finally:
                    os._exit(code)
            deadline = time.monotonic() + 30
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    pytest.fail("the forked child hung")
                time.sleep(0.005)
            assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop.set()
        for t in ts:
            t.join()
    np.testing.assert_array_equal(held, want)


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (1.5, TypeError), ("1", TypeError), (True, TypeError),
                                      (None, TypeError)])
def test_bad_limits_raise(bad, exc, cache_limit):
    before = lo.get_result_cache_limit()
    with pytest.raises(exc, match="nbytes"):
        lo.set_result_cache_limit(bad)
    assert lo.get_result_cache_limit() == before
    lo.set_result_cache_limit(np.int64(3 << 20))
    assert lo.get_result_cache_limit() == 3 << 20
    lo.set_result_cache_limit(2**80)  # clamped, not an overflow
    assert lo.get_result_cache_limit() >= 2**62


@pytest.mark.parametrize("value, limit, warns", [("64M", 64 << 20, False), ("0", 0, False), (" 1048576 ", 1 << 20, False),
                                                 ("", 256 << 20, False), ("1.5G", 256 << 20, True),
                                                 ("-1", 256 << 20, True), ("lots", 256 << 20, True)])
def test_environment_variable(value, limit, warns):
    env = {**os.environ, "LOGITOPS_RESULT_CACHE": value}
    r = subprocess.run([sys.executable, "-c", "import logitops as lo; print(lo.get_result_cache_limit())"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == limit
    assert ("LOGITOPS_RESULT_CACHE" in r.stderr) == warns, r.stderr
