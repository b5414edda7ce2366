#!/usr/bin/env python
"""logitops vs torch (CPU) vs NumPy, measured side by side in one process.

Every case times each implementation interleaved (round-robin, after a warm-up), reports the
median and the speed-up over torch at the same thread count, and relates our time to the memory
floor measured here at start-up (how long merely reading the inputs and writing the outputs takes
on this machine). Prints a markdown table and writes it to bench/results.md, and a chart of the
speed-ups to bench/speedups.png when matplotlib is installed.

    python bench/run.py            # the full table (a few minutes)
    python bench/run.py --quick    # a subset, under a minute
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import logitops as lo

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the bench still runs, without the torch columns
    torch = None
    F = None

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- timing


def _calibrate(fn: Callable[[], object], target_s: float) -> int:
    """Calls per sample so that one sample lasts about target_s (tiny calls are batched)."""
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return max(1, int(target_s / max(dt, 1e-7)))


def measure(impls: dict[str, Callable[[], object]], rounds: int, target_s: float) -> dict[str, list[float]]:
    """Per-call seconds of each implementation: `rounds` samples each, interleaved."""
    for fn in impls.values():  # warm-up: page faults, caches, lazy init
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
    return samples


def memory_bandwidth(nbytes: int = 1 << 29) -> tuple[float, float]:
    """(read, copy) bandwidth in bytes/s of a large float32 array, best of a few runs."""
    a = np.ones(nbytes // 4, dtype=np.float32)
    b = np.empty_like(a)
    np.copyto(b, a)
    read = min(_timed(lambda: a.sum()) for _ in range(5))
    copy = min(_timed(lambda: np.copyto(b, a)) for _ in range(5))
    return nbytes / read, nbytes / copy


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- cases


@dataclass
class Case:
    name: str  # what is computed, e.g. "cross_entropy value+grad"
    size: str  # e.g. "2048x32000"
    dtype: type
    ours: Callable[[], object]
    torch: Callable[[], object] | None  # the same computation as torch users run it
    numpy: Callable[[], object] | None
    bytes_in: int  # bytes the computation must read
    bytes_out: int  # bytes it must write
    threads: tuple[int, ...] = (1,)
    extra: dict = field(default_factory=dict)


def _t(a: np.ndarray, grad: bool = False):
    t = torch.from_numpy(a)
    return t.requires_grad_(True) if grad else t


def _torch_fwd_bwd(fn: Callable, *args):
    """fn(*args) then backward through autograd w.r.t. args[0], as a training step runs it."""

    def run():
        x = args[0].detach().requires_grad_(True)
        y = fn(x, *args[1:])
        if y.dim() == 0:
            y.backward()
        else:
            y.backward(torch.ones_like(y))
        return x.grad

    return run


def _np_logsumexp(x):
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]


def _np_log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    s = x - m
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def _np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _np_ce(x, y):
    lp = _np_log_softmax(x)
    return -lp[np.arange(len(y)), y].mean()


def _np_bce_logits(x, t):
    return np.mean(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))))


def build_cases(quick: bool) -> list[Case]:
    rng = np.random.default_rng(0)
    cases: list[Case] = []
    both = (1, 2)

    def rows(r, c, dt=np.float32, scale=3.0):
        return (rng.standard_normal((r, c)) * scale).astype(dt)

    # --- primitives
    row_sizes = [(64, 10), (8192, 1000), (4096, 1000), (2048, 32000)]
    elem_sizes = [1000, 100_000, 10_000_000]
    if quick:
        row_sizes = [(64, 10), (4096, 1000)]
        elem_sizes = [1000, 1_000_000]
    for r, c in row_sizes:
        x = rows(r, c)
        n = x.nbytes
        big = r * c >= 1_000_000
        thr = both if big else (1,)
        tx = _t(x) if torch else None
        size = f"{r}x{c}"
        cases.append(Case("logsumexp", size, np.float32, lambda x=x: lo.logsumexp(x),
                          (lambda tx=tx: torch.logsumexp(tx, -1)) if torch else None,
                          lambda x=x: _np_logsumexp(x), n, r * 4, thr))
        cases.append(Case("log_softmax", size, np.float32, lambda x=x: lo.log_softmax(x),
                          (lambda tx=tx: F.log_softmax(tx, -1)) if torch else None,
                          lambda x=x: _np_log_softmax(x), n, n, thr))
        cases.append(Case("softmax", size, np.float32, lambda x=x: lo.softmax(x),
                          (lambda tx=tx: F.softmax(tx, -1)) if torch else None,
                          lambda x=x: _np_softmax(x), n, n, thr))
        if big:
            g = rows(r, c, scale=1.0)
            cases.append(Case("log_softmax backward", size, np.float32,
                              lambda g=g, x=x: lo.log_softmax_backward(g, x),
                              _torch_grad_with(F.log_softmax, x, g) if torch else None,
                              None, 2 * n, n, thr))
    for n_el in elem_sizes:
        x = (rng.standard_normal(n_el) * 4).astype(np.float32)
        n = x.nbytes
        thr = both if n_el >= 1_000_000 else (1,)
        tx = _t(x) if torch else None
        size = f"{n_el:.0e}".replace("e+0", "e")
        cases.append(Case("log_sigmoid", size, np.float32, lambda x=x: lo.log_sigmoid(x),
                          (lambda tx=tx: F.logsigmoid(tx)) if torch else None,
                          lambda x=x: -np.logaddexp(0, -x), n, n, thr))
        cases.append(Case("sigmoid", size, np.float32, lambda x=x: lo.sigmoid(x),
                          (lambda tx=tx: torch.sigmoid(tx)) if torch else None,
                          lambda x=x: 1 / (1 + np.exp(-x)), n, n, thr))
    x64 = rows(4096, 1000, np.float64)
    cases.append(Case("logsumexp", "4096x1000", np.float64, lambda: lo.logsumexp(x64),
                      (lambda t=_t(x64) if torch else None: torch.logsumexp(t, -1)) if torch else None,
                      lambda: _np_logsumexp(x64), x64.nbytes, 4096 * 8))

    # --- binary losses (present once that family has landed)
    if hasattr(lo, "binary_cross_entropy_with_logits_value_and_grad"):
        for n_el in ([1_000_000] if quick else [1000, 100_000, 10_000_000]):
            x = (rng.standard_normal(n_el) * 4).astype(np.float32)
            t = (rng.random(n_el) < 0.5).astype(np.float32)
            p = (1 / (1 + np.exp(-x))).astype(np.float32)
            size = f"{n_el:.0e}".replace("e+0", "e")
            thr = both if n_el >= 1_000_000 else (1,)
            tx, tt, tp = (_t(x), _t(t), _t(p)) if torch else (None, None, None)
            cases.append(Case("bce_with_logits forward", size, np.float32,
                              lambda x=x, t=t: lo.binary_cross_entropy_with_logits(x, t),
                              (lambda tx=tx, tt=tt: F.binary_cross_entropy_with_logits(tx, tt)) if torch else None,
                              lambda x=x, t=t: _np_bce_logits(x, t), 2 * x.nbytes, 0, thr))
            cases.append(Case("bce_with_logits value+grad", size, np.float32,
                              lambda x=x, t=t: lo.binary_cross_entropy_with_logits_value_and_grad(x, t),
                              _torch_fwd_bwd(F.binary_cross_entropy_with_logits, tx, tt) if torch else None,
                              None, 2 * x.nbytes, x.nbytes, thr))
            cases.append(Case("bce value+grad", size, np.float32,
                              lambda p=p, t=t: lo.binary_cross_entropy_value_and_grad(p, t),
                              _torch_fwd_bwd(F.binary_cross_entropy, tp, tt) if torch else None,
                              None, 2 * p.nbytes, p.nbytes, thr))

    # --- multiclass losses (present once that family has landed)
    if hasattr(lo, "cross_entropy_value_and_grad"):
        ce_sizes = [(8, 4), (64, 10), (8192, 1000), (2048, 32000), (256, 128256)]
        if quick:
            ce_sizes = [(8, 4), (4096, 1000), (256, 32000)]
        for r, c in ce_sizes:
            x = rows(r, c)
            y = rng.integers(0, c, r)
            size = f"{r}x{c}"
            big = r * c >= 1_000_000
            thr = both if big else (1,)
            tx, ty = (_t(x), torch.from_numpy(y)) if torch else (None, None)
            cases.append(Case("cross_entropy forward", size, np.float32,
                              lambda x=x, y=y: lo.cross_entropy(x, y),
                              (lambda tx=tx, ty=ty: F.cross_entropy(tx, ty)) if torch else None,
                              (lambda x=x, y=y: _np_ce(x, y)) if r * c <= 10_000_000 else None,
                              x.nbytes + y.nbytes, 0, thr))
            if r * c >= 100:
                out = np.empty_like(x)
                cases.append(Case("cross_entropy value+grad", size, np.float32,
                                  lambda x=x, y=y, out=out: lo.cross_entropy_value_and_grad(x, y, out=out),
                                  _torch_fwd_bwd(F.cross_entropy, tx, ty) if torch else None,
                                  None, x.nbytes + y.nbytes, x.nbytes, thr))
    return cases


def _torch_grad_with(fn, x: np.ndarray, g: np.ndarray):
    tx, tg = _t(x), _t(g)

    def run():
        a = tx.detach().requires_grad_(True)
        fn(a, -1).backward(tg)
        return a.grad

    return run


# ----------------------------------------------------------------------------- report


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    return f"{s * 1e3:.2f} ms"


def run(quick: bool) -> str:
    read_bw, copy_bw = memory_bandwidth(1 << 28 if quick else 1 << 29)
    rounds = 3 if quick else 7
    target = 0.01 if quick else 0.02
    header = (
        "| function | size | dtype | threads | logitops | torch | numpy | vs torch | GB/s | × memory floor |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    chart: list[tuple[str, float]] = []
    cases = build_cases(quick)
    for i, case in enumerate(cases):
        for threads in case.threads:
            lo.set_num_threads(threads)
            if torch:
                torch.set_num_threads(threads)
            impls = {"ours": case.ours}
            if case.torch:
                impls["torch"] = case.torch
            if case.numpy and threads == 1:
                impls["numpy"] = case.numpy
            s = measure(impls, rounds, target)
            med = {k: statistics.median(v) for k, v in s.items()}
            spread = (max(s["ours"]) - min(s["ours"])) / med["ours"]
            ours = fmt_time(med["ours"]) + (f" ±{spread * 50:.0f}%" if spread > 0.2 else "")
            tt = fmt_time(med["torch"]) if "torch" in med else "—"
            nn = fmt_time(med["numpy"]) if "numpy" in med else "—"
            sp = med["torch"] / med["ours"] if "torch" in med else float("nan")
            moved = case.bytes_in + case.bytes_out
            gbs = moved / med["ours"] / 1e9
            floor = case.bytes_in / read_bw + case.bytes_out / copy_bw
            xfloor = med["ours"] / floor if floor > 0 else float("nan")
            dt = np.dtype(case.dtype).name
            lines.append(
                f"| {case.name} | {case.size} | {dt} | {threads} | {ours} | {tt} | {nn} | "
                f"{sp:.1f}× | {gbs:.1f} | {xfloor:.1f} |"
            )
            print(lines[-1], flush=True)
            if threads == 1 and "torch" in med:
                chart.append((f"{case.name} {case.size} {dt}", sp))
    lo.set_num_threads(os.cpu_count() or 1)
    info = (
        f"logitops {lo.__version__} ({lo.isa()}), torch {torch.__version__ if torch else 'absent'}, "
        f"numpy {np.__version__}, Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs; memory floor measured here: read {read_bw / 1e9:.1f} GB/s, "
        f"copy {copy_bw / 1e9:.1f} GB/s. Medians of {rounds} interleaved samples; 'torch' is the same "
        "computation as torch users run it (forward; forward+backward through autograd for gradient "
        "rows); 'vs torch' = torch time / logitops time at the same thread count; '× memory floor' = "
        "our time / (time to read the inputs and write the outputs once at the measured bandwidth)."
    )
    table = "\n".join(lines)
    report = f"{table}\n\n{info}\n"
    if not quick:
        (HERE / "results.md").write_text(f"# Benchmark results\n\n{report}")
        _chart(chart, HERE / "speedups.png")
    return report


def _chart(chart: list[tuple[str, float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no chart)")
        return
    labels = [c[0] for c in chart][::-1]
    vals = [c[1] for c in chart][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(labels) + 1.2))
    ax.barh(labels, vals, color="#3b7dd8")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("speed-up over torch CPU, 1 thread (×, log scale)")
    for y, v in enumerate(vals):
        ax.text(v, y, f" {v:.1f}×", va="center", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"chart written to {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a subset of the cases, under a minute")
    args = ap.parse_args()
    print(run(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
