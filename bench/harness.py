"""Timing: implementations of one case measured interleaved (round-robin, after a warm-up), and the
memory floor of this machine (how long merely reading the inputs and writing the outputs takes)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from cases import Case

import logitops as lo

# Pause between samples on more than one thread: torch's OpenMP workers spin for a while after a
# call and would take the second core from whichever library runs next (measured: our softmax
# 8192x1000 on 2 threads, 2.8 ms alone, 3.9 ms right after a torch call, 2.8 ms after a pause).
SETTLE_S = 0.05


@dataclass(frozen=True)
class Timing:
    """Per-call seconds of one implementation: every sample, their median and relative spread."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median."""
        return (max(self.samples) - min(self.samples)) / self.median


def set_threads(n: int) -> None:
    lo.set_num_threads(n)
    torch = sys.modules.get("torch")  # only if a case has imported it
    if torch is not None:
        torch.set_num_threads(n)


def _calibrate(fn: Callable[[], object], target_s: float) -> int:
    """Calls per sample so that one sample lasts about target_s (tiny calls are batched)."""
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return max(1, int(target_s / max(dt, 1e-7)))


def measure(impls: dict[str, Callable[[], object]], rounds: int, target_s: float,
            settle_s: float = 0.0) -> dict[str, Timing]:
    """`rounds` samples of each implementation, interleaved, with a pause of settle_s after each
    sample (see SETTLE_S)."""
    for fn in impls.values():  # warm-up: page faults, caches, lazy init, jit compilation
        fn()
        fn()
    batch = {name: _calibrate(fn, target_s) for name, fn in impls.items()}
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            k = batch[name]
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            samples[name].append((time.perf_counter() - t0) / k)
            time.sleep(settle_s)
    return {name: Timing(tuple(s)) for name, s in samples.items()}


def time_case(case: Case, threads: int, rounds: int, target_s: float) -> dict[str, Timing]:
    """Timings of the case at `threads` threads, keyed "ours", "torch", "numpy", "jax" (those it
    has). NumPy and jax run single-threaded, so they are timed in the 1-thread rows only."""
    set_threads(threads)
    impls: dict[str, Callable[[], object]] = {"ours": case.ours}
    if case.torch:
        impls["torch"] = case.torch
    if threads == 1:
        if case.numpy:
            impls["numpy"] = case.numpy
        if case.jax:
            impls["jax"] = case.jax
    return measure(impls, rounds, target_s, SETTLE_S if threads > 1 else 0.0)


def time_call(case: Case, rounds: int, target_s: float) -> dict[str, Timing]:
    """Per-call time of ours and torch's at 1 thread (the tiny-input table)."""
    set_threads(1)
    impls: dict[str, Callable[[], object]] = {"ours": case.ours}
    if case.torch:
        impls["torch"] = case.torch
    return measure(impls, rounds, target_s)


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def memory_bandwidth(nbytes: int = 1 << 29) -> tuple[float, float]:
    """(read, copy) bandwidth in bytes/s of a large float32 array, best of a few runs."""
    a = np.ones(nbytes // 4, dtype=np.float32)
    b = np.empty_like(a)
    np.copyto(b, a)
    read = min(_timed(lambda: a.sum()) for _ in range(5))
    copy = min(_timed(lambda: np.copyto(b, a)) for _ in range(5))
    return nbytes / read, nbytes / copy


def memory_floor_s(case: Case, read_bw: float, copy_bw: float) -> float:
    """Seconds to read the case's inputs and write its outputs once at the measured bandwidth."""
    return case.bytes_in / read_bw + case.bytes_out / copy_bw
