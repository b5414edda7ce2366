"""Memory and threads, for every public function (discovered from logitops.__all__, see _api.py):

- thousands of calls (valid ones and ones that raise) keep the process's resident memory flat;
- eight Python threads calling the same and different functions at once, while
  set_num_threads changes, get results bit-identical to serial calls;
- the GIL is released while a kernel runs: a pure-Python thread makes progress during every
  call into the extension that does the work.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest
from _api import LOSSES, call, call_kwargs, first_array, first_name, public_functions, split
from _helpers import LOW_DTYPES

import logitops as lo
from logitops import _core

FUNCS = public_functions()
PAGE = os.sysconf("SC_PAGE_SIZE")

# ASan keeps freed memory in quarantine: resident memory grows without a leak.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _variants(name: str, rng, shape, dtypes=(np.float32, np.float64, *LOW_DTYPES)) -> list[dict]:
    base = split(name)[0]
    out = []
    for dt in dtypes:
        if base in LOSSES:
            for red in ("none", "mean"):
                extra = {"weight": "last", "pos_weight": "last"} if "binary" in base else {"weight": True, "n_ignored": 3}
                out.append(call_kwargs(name, rng, dt, shape=shape, reduction=red, **extra))
        else:
            out.append(call_kwargs(name, rng, dt, shape=shape))
    return out


def _raising(name: str, kw: dict) -> list[dict]:
    """Calls that raise after some work was done (validation deep in the call)."""
    first = first_name(kw)
    bad = [{**kw, first: kw[first].astype(np.int32)}]
    if "reduction" in kw:
        bad.append({**kw, "reduction": "avg"})
    if "target" in kw and kw["target"].dtype.kind in "iu":
        t = kw["target"].copy()
        t.reshape(-1)[-1] = 10**6
        bad.append({**kw, "target": t})
    if "grad_output" in kw and np.ndim(kw["grad_output"]):
        bad.append({**kw, "grad_output": kw["grad_output"][..., :-1]})
    return bad


@pytest.mark.skipif(UNDER_ASAN, reason="ASan's quarantine holds freed memory")
@pytest.mark.parametrize("name", FUNCS)
def test_memory_stays_flat(name, rng):
    """4000 valid calls (64 x 33 arrays: a leaked output is 8-17 kB a call, 32-68 MB in all),
    calls that raise, and multi-chunk calls (the pool's path): resident memory grows by less
    than 6 MB after a warm-up."""
    small = _variants(name, rng, (64, 33))
    big = _variants(name, rng, (300, 220), dtypes=(np.float32,))
    bad = [b for kw in small[:1] for b in _raising(name, kw)]

    def round_(k: int) -> None:
        for kw in small:
            call(name, kw)
        for kw in bad:
            try:
                call(name, kw)
            except (TypeError, ValueError, IndexError):
                pass
            else:
                raise AssertionError(f"{name}: a bad call did not raise")
        if k % 10 == 0:
            for kw in big:
                call(name, kw)

    rounds = 4000 // len(small)
    for k in range(rounds // 10):
        round_(k)
    before = rss()
    for k in range(rounds):
        round_(k)
    grown = rss() - before
    assert grown < 6 << 20, f"{name}: resident memory grew by {grown / 2**20:.1f} MB over {rounds} rounds"


# ----------------------------------------------------------------------------- threads


def _same(a, b) -> bool:
    """Bit-identical results (tuples of loss and gradient compared item by item)."""
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_eight_threads_match_serial(rng):
    """Eight threads run every function (each thread in another order, so the same and
    different functions overlap), several rounds, while the main thread keeps changing
    set_num_threads; every result is bit-identical to the serial one."""
    jobs = []
    for name in FUNCS:
        for shape in ((256, 257), (9, 13)):  # several pool chunks; one inline chunk
            for kw in _variants(name, rng, shape):
                jobs.append((name, kw))
    threads_before = lo.get_num_threads()
    lo.set_num_threads(1)
    serial = [call(name, kw) for name, kw in jobs]
    lo.set_num_threads(threads_before)
    assert all(_same(r, call(n, kw)) for r, (n, kw) in zip(serial[:5], jobs[:5]))

    errors: list[str] = []
    done = threading.Event()
    start = threading.Barrier(9)

    def worker(i: int) -> None:
        start.wait()
        try:
            order = list(range(len(jobs)))
            order = order[i * 7 % len(order):] + order[: i * 7 % len(order)]
            if i % 2:
                order.reverse()
            for _ in range(2):
                for j in order:
                    name, kw = jobs[j]
                    r = call(name, kw)
                    if not _same(r, serial[j]):
                        errors.append(f"thread {i}: {name} {kw.get('reduction', '')} "
                                      f"{first_array(kw).shape} differs from serial")
                    # and one that raises, concurrently with the others' work
                    if j % 5 == 0:
                        try:
                            call(name, {**kw, first_name(kw): np.zeros(3, np.int8)})
                            errors.append(f"thread {i}: {name} accepted int8")
                        except TypeError:
                            pass
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"thread {i}: {type(e).__name__}: {e}")

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    try:
        start.wait()
        k = 0
        while any(t.is_alive() for t in ts):
            lo.set_num_threads(1 + k % 4)
            k += 1
            time.sleep(0.002)
    finally:
        for t in ts:
            t.join()
        lo.set_num_threads(threads_before)
        done.set()
    assert not errors, "\n".join(errors[:20])
    assert k > 1  # the thread count did change while the workers ran


def test_same_function_eight_threads_large(rng):
    """The same large reduction from eight threads at once, 4 pool threads: bit-identical."""
    name = "logsumexp" if "cross_entropy" not in FUNCS else "cross_entropy"
    kw = _variants(name, rng, (2000, 301), dtypes=(np.float32,))[-1]
    want = call(name, kw)
    before = lo.get_num_threads()
    lo.set_num_threads(4)
    results: list = [None] * 8

    def worker(i: int) -> None:
        results[i] = [call(name, kw) for _ in range(3)]

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    try:
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        lo.set_num_threads(before)
    assert all(_same(r, want) for rs in results for r in rs)


# ----------------------------------------------------------------------------- the GIL


class _Ticker:
    """A pure-Python thread that counts while it holds the GIL and sleeps between counts.

    With a 5 s switch interval it can only take the GIL when the main thread gives it up
    (never by a forced switch), so its count advances during a call into the extension only if
    that call releases the GIL."""

    def __init__(self) -> None:
        self.count = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop:
            self.count += 1
            time.sleep(1e-4)

    def __enter__(self):
        self.interval = sys.getswitchinterval()
        self.thread.start()
        sys.setswitchinterval(5.0)
        return self

    def __exit__(self, *exc):
        sys.setswitchinterval(self.interval)
        self.stop = True
        self.thread.join()


def _core_functions() -> list[str]:
    skip = {"isa", "available_isas", "_set_isa", "set_num_threads", "get_num_threads"}
    return [n for n in dir(_core) if not n.startswith("__") and n not in skip and callable(getattr(_core, n))]


@pytest.mark.parametrize("name", FUNCS)
def test_gil_released(name, rng, monkeypatch):
    """During the longest call into _core that lo.<name> makes, a Python thread runs."""
    calls: list[tuple[float, int, str]] = []
    ticker = _Ticker()

    def wrap(fname, f):
        def wrapped(*a, **k):
            c0, t0 = ticker.count, time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                calls.append((time.perf_counter() - t0, ticker.count - c0, fname))
        return wrapped

    for fname in _core_functions():
        monkeypatch.setattr(_core, fname, wrap(fname, getattr(_core, fname)))
    before = lo.get_num_threads()
    lo.set_num_threads(1)  # leave the other core to the ticker
    try:
        with ticker:
            # Bigger inputs until the kernel outlasts the ticker's wake-up latency, then the
            # largest again (a cheap kernel such as nll_loss's forward takes < 1 ms, and a loaded
            # machine may not wake the ticker in time once); without a GIL release the count
            # stays 0 at any size and any number of tries.
            for rows in (2000, 8000) + (32000,) * 20:
                base = split(name)[0]
                opts = {"reduction": "sum", "weight": True} if base in LOSSES and "binary" not in base else \
                    {"reduction": "sum"} if base in LOSSES else {}
                kw = call_kwargs(name, rng, np.float32, shape=(rows, 128), **opts)
                calls.clear()
                call(name, kw)
                assert calls, f"{name} made no call into _core"
                longest = max(calls)
                if longest[1] > 0:
                    break
    finally:
        lo.set_num_threads(before)
    assert longest[1] > 0, f"{name}: the GIL was held throughout _core.{longest[2]} ({longest[0] * 1e3:.1f} ms)"
