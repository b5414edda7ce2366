#!/usr/bin/env python
"""logitops vs torch (CPU) vs NumPy (and jax/optax when installed), measured side by side in one
process.

Every case times each implementation interleaved (round-robin, after a warm-up), reports the
median and the speed-up over torch at the same thread count, and relates our time to the memory
floor measured here at start-up (how long merely reading the inputs and writing the outputs takes
on this machine). Large cases also report the peak memory of the call, ours and torch's, each
measured in a fresh process (bench/memory.py); tiny inputs get their own table of the time per
call (the fixed cost of a call: argument checks, dispatch, allocation). Prints markdown and writes
it to bench/results.md, and a chart of the speed-ups to bench/speedups.png when matplotlib is
installed.

    python bench/run.py            # every case (a few minutes)
    python bench/run.py --quick    # a subset, under a minute, no memory column
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
import zlib
from dataclasses import dataclass
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

# jax/optax, when installed: one more column, jit-compiled (the compilation is part of the warm-up)
# and single-threaded (XLA's thread pool is fixed when jax starts, so it runs in the 1-thread rows).
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
try:
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_enable_x64", True)  # float64 rows stay float64 (float32 stays float32)
except ImportError:
    jax = jnp = optax = None

HERE = Path(__file__).resolve().parent
BIG = 1_000_000  # elements from which a case runs at 2 threads too and gets the memory column
TINY = 100  # elements below which a case measures the per-call overhead (its own table)
# Pause between samples on more than one thread: torch's OpenMP workers spin for a while after a
# call and would take the second core from whichever library runs next (measured: our softmax
# 8192x1000 on 2 threads, 2.8 ms alone, 3.9 ms right after a torch call, 2.8 ms after a pause).
SETTLE_S = 0.05


# ----------------------------------------------------------------------------- timing


def _calibrate(fn: Callable[[], object], target_s: float) -> int:
    """Calls per sample so that one sample lasts about target_s (tiny calls are batched)."""
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return max(1, int(target_s / max(dt, 1e-7)))


def measure(impls: dict[str, Callable[[], object]], rounds: int, target_s: float,
            settle_s: float = 0.0) -> dict[str, list[float]]:
    """Per-call seconds of each implementation: `rounds` samples each, interleaved, with a pause
    of settle_s after each sample (see SETTLE_S)."""
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
            time.sleep(settle_s)
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


def set_threads(n: int) -> None:
    lo.set_num_threads(n)
    if torch:
        torch.set_num_threads(n)


# ----------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One computation at one size. Rebuilt from (name, shape, dtype) alone by make_case, so that
    bench/memory.py can rebuild it in a fresh process."""

    name: str  # what is computed, e.g. "cross_entropy value+grad"
    shape: tuple[int, ...]
    dtype: type
    ours: Callable[[], object]
    torch: Callable[[], object] | None  # the same computation as torch users run it
    numpy: Callable[[], object] | None
    bytes_in: int  # bytes the computation must read
    bytes_out: int  # bytes it must write
    ours_fresh: Callable[[], object] | None = None  # value+grad: the call without out= (a new gradient)
    out: np.ndarray | None = None  # value+grad: the gradient buffer `ours` writes into
    jax: Callable[[], object] | None = None  # the same computation in jax/optax, jit-compiled

    @property
    def size(self) -> str:
        return shape_str(self.shape)

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def threads(self) -> tuple[int, ...]:
        return (1, 2) if self.elements >= BIG else (1,)


def shape_str(shape: tuple[int, ...]) -> str:
    if len(shape) == 1 and shape[0] >= 1000:
        s = f"{shape[0]:.0e}".replace("e+0", "e")
        if float(s) == shape[0]:
            return s  # 1e3, 1e7
    return "x".join(map(str, shape))


def _t(a: np.ndarray):
    return torch.from_numpy(a)


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


def _jax_case(name: str, x: np.ndarray, **arrays: np.ndarray) -> Callable[[], object] | None:
    """`name` in jax/optax as its users write it, jit-compiled, on device copies of the arrays made
    once here; None when jax is absent or has no counterpart. Each call waits for its result."""
    if jax is None:
        return None
    jx = jax.device_put(x)
    ja = {k: jax.device_put(v) for k, v in arrays.items()}
    nn = jax.nn

    def bce_probs(p, t):  # torch's clamp of the logs at -100, as a user would port it
        return -(t * jnp.maximum(jnp.log(p), -100) + (1 - t) * jnp.maximum(jnp.log1p(-p), -100)).mean()

    fns: dict[str, Callable] = {
        "logsumexp": lambda a: jax.scipy.special.logsumexp(a, axis=-1),
        "log_softmax": lambda a: nn.log_softmax(a, axis=-1),
        "softmax": lambda a: nn.softmax(a, axis=-1),
        "log_softmax backward": lambda a, g: jax.vjp(lambda v: nn.log_softmax(v, axis=-1), a)[1](g)[0],
        "log_sigmoid": nn.log_sigmoid,
        "sigmoid": nn.sigmoid,
        "bce_with_logits forward": lambda a, t: optax.sigmoid_binary_cross_entropy(a, t).mean(),
        "bce_with_logits value+grad": jax.value_and_grad(lambda a, t: optax.sigmoid_binary_cross_entropy(a, t).mean()),
        "bce value+grad": jax.value_and_grad(bce_probs),
        "cross_entropy forward": lambda a, y: optax.softmax_cross_entropy_with_integer_labels(a, y).mean(),
        "cross_entropy value+grad": jax.value_and_grad(
            lambda a, y: optax.softmax_cross_entropy_with_integer_labels(a, y).mean()),
    }
    fns["cross_entropy value+grad, new grad"] = fns["cross_entropy value+grad"]
    if name not in fns:
        return None
    f = jax.jit(fns[name])
    args = (jx, *ja.values())
    return lambda: jax.block_until_ready(f(*args))


def _torch_grad_with(fn, x: np.ndarray, g: np.ndarray):
    """x.grad of fn(x, -1).backward(g): torch's backward of a row function."""
    tx, tg = _t(x), _t(g)

    def run():
        a = tx.detach().requires_grad_(True)
        fn(a, -1).backward(tg)
        return a.grad

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


def make_case(name: str, shape: tuple[int, ...], dtype: type = np.float32) -> Case:
    """The case `name` at `shape`: inputs drawn from a generator seeded by the case itself (the
    same numbers in every process). Gradients of value+grad cases go into a reused `out` buffer
    (as a training loop would call it), except on tiny inputs, which measure the plain call."""
    rng = np.random.default_rng(zlib.crc32(f"{name} {shape} {np.dtype(dtype).name}".encode()))
    n_el = math.prod(shape)
    x = rng.standard_normal(shape, dtype=dtype)
    x *= 3.0 if len(shape) == 2 else 4.0
    n = x.nbytes
    tx = _t(x) if torch else None
    use_out = n_el >= TINY

    def case(ours, tfn, nfn, b_in, b_out, fresh=None, out=None, jfn=None) -> Case:
        return Case(name, shape, dtype, ours, tfn if torch else None, nfn, b_in, b_out, fresh, out, jfn)

    jfn = _jax_case(name, x) if name in ("logsumexp", "log_softmax", "softmax", "log_sigmoid", "sigmoid") else None
    if name == "logsumexp":
        return case(lambda: lo.logsumexp(x), lambda: torch.logsumexp(tx, -1), lambda: _np_logsumexp(x),
                    n, n // shape[-1], jfn=jfn)
    if name == "log_softmax":
        return case(lambda: lo.log_softmax(x), lambda: F.log_softmax(tx, -1), lambda: _np_log_softmax(x), n, n,
                    jfn=jfn)
    if name == "softmax":
        return case(lambda: lo.softmax(x), lambda: F.softmax(tx, -1), lambda: _np_softmax(x), n, n, jfn=jfn)
    if name == "log_softmax backward":
        g = rng.standard_normal(shape, dtype=dtype)
        return case(lambda: lo.log_softmax_backward(g, x),
                    _torch_grad_with(F.log_softmax, x, g) if torch else None, None, 2 * n, n,
                    jfn=_jax_case(name, x, g=g))
    if name == "log_sigmoid":
        return case(lambda: lo.log_sigmoid(x), lambda: F.logsigmoid(tx), lambda: -np.logaddexp(0, -x), n, n,
                    jfn=jfn)
    if name == "sigmoid":
        return case(lambda: lo.sigmoid(x), lambda: torch.sigmoid(tx), lambda: 1 / (1 + np.exp(-x)), n, n, jfn=jfn)
    if name.endswith(", out="):  # into a reused buffer, torch too (its out= variants)
        o = np.empty_like(x)
        to = _t(o) if torch else None
        axis_kw: dict = {"axis": -1} if len(shape) == 2 else {}
        ours_fn = getattr(lo, name[: -len(", out=")])
        tfn = {"log_softmax, out=": lambda: torch.log_softmax(tx, -1, out=to),
               "softmax, out=": lambda: torch.softmax(tx, -1, out=to),
               "log_sigmoid, out=": lambda: F.logsigmoid(tx, out=to),
               "sigmoid, out=": lambda: torch.sigmoid(tx, out=to)}[name]
        return case(lambda: ours_fn(x, **axis_kw, out=o), tfn, None, n, n)

    if name.startswith("bce"):
        t = (rng.random(shape) < 0.5).astype(dtype)
        tt = _t(t) if torch else None
        out = np.empty_like(x) if use_out else None
        if name == "bce_with_logits forward":
            return case(lambda: lo.binary_cross_entropy_with_logits(x, t),
                        lambda: F.binary_cross_entropy_with_logits(tx, tt), lambda: _np_bce_logits(x, t), 2 * n, 0,
                        jfn=_jax_case(name, x, t=t))
        if name == "bce_with_logits value+grad":
            vg = lo.binary_cross_entropy_with_logits_value_and_grad
            return case(lambda: vg(x, t, out=out), _torch_fwd_bwd(F.binary_cross_entropy_with_logits, tx, tt)
                        if torch else None, None, 2 * n, n, lambda: vg(x, t), out, jfn=_jax_case(name, x, t=t))
        if name == "bce value+grad":
            p = (1 / (1 + np.exp(-x))).astype(dtype)
            tp = _t(p) if torch else None
            vg = lo.binary_cross_entropy_value_and_grad
            return case(lambda: vg(p, t, out=out), _torch_fwd_bwd(F.binary_cross_entropy, tp, tt)
                        if torch else None, None, 2 * n, n, lambda: vg(p, t), out, jfn=_jax_case(name, p, t=t))

    if name.startswith("cross_entropy"):
        y = rng.integers(0, shape[1], shape[0])
        ty = torch.from_numpy(y) if torch else None
        b_in = n + y.nbytes
        jfn = _jax_case(name, x, y=y)
        if name == "cross_entropy forward":
            return case(lambda: lo.cross_entropy(x, y), lambda: F.cross_entropy(tx, ty),
                        (lambda: _np_ce(x, y)) if n_el <= 10_000_000 else None, b_in, 0, jfn=jfn)
        vg = lo.cross_entropy_value_and_grad
        torch_vg = _torch_fwd_bwd(F.cross_entropy, tx, ty) if torch else None
        if name == "cross_entropy value+grad":
            out = np.empty_like(x) if use_out else None
            return case(lambda: vg(x, y, out=out), torch_vg, None, b_in, n, lambda: vg(x, y), out, jfn=jfn)
        if name == "cross_entropy value+grad, new grad":  # what out= saves: a fresh gradient each call
            return case(lambda: vg(x, y), torch_vg, None, b_in, n, jfn=jfn)
    raise ValueError(f"unknown case {name!r}")


def case_list(quick: bool) -> tuple[list[tuple[str, tuple[int, ...], type]], list[tuple[str, tuple[int, ...], type]]]:
    """(main table, tiny-input table) as (name, shape, dtype) triples."""
    f32, f64 = np.float32, np.float64
    main: list[tuple[str, tuple[int, ...], type]] = []
    row_sizes = [(64, 10), (4096, 1000)] if quick else [(64, 10), (8192, 1000), (4096, 1000), (2048, 32000)]
    for r, c in row_sizes:
        main += [("logsumexp", (r, c), f32), ("log_softmax", (r, c), f32), ("softmax", (r, c), f32)]
        if r * c >= BIG:
            main.append(("log_softmax backward", (r, c), f32))
        if r * c >= 10 * BIG:
            main += [("log_softmax, out=", (r, c), f32), ("softmax, out=", (r, c), f32)]
    for n in [1000, 1_000_000] if quick else [1000, 100_000, 10_000_000]:
        main += [("log_sigmoid", (n,), f32), ("sigmoid", (n,), f32)]
        if n >= 10 * BIG:
            main += [("log_sigmoid, out=", (n,), f32), ("sigmoid, out=", (n,), f32)]
    main.append(("logsumexp", (4096, 1000), f64))
    if hasattr(lo, "binary_cross_entropy_with_logits_value_and_grad"):
        for n in [1_000_000] if quick else [1000, 100_000, 10_000_000]:
            main += [("bce_with_logits forward", (n,), f32), ("bce_with_logits value+grad", (n,), f32),
                     ("bce value+grad", (n,), f32)]
    if hasattr(lo, "cross_entropy_value_and_grad"):
        ce_sizes = [(4096, 1000), (256, 32000)] if quick else [(64, 10), (8192, 1000), (2048, 32000), (256, 128256)]
        for s in ce_sizes:
            main += [("cross_entropy forward", s, f32), ("cross_entropy value+grad", s, f32)]
        main.append(("cross_entropy value+grad, new grad", ce_sizes[-2 if not quick else -1], f32))
        if not quick:
            main.append(("cross_entropy value+grad", (8192, 1000), f64))

    tiny = [("log_softmax", (8, 4), f32)]
    if hasattr(lo, "binary_cross_entropy_with_logits_value_and_grad"):
        tiny += [("bce_with_logits forward", (8,), f32), ("bce_with_logits value+grad", (8,), f32)]
    if hasattr(lo, "cross_entropy_value_and_grad"):
        tiny += [("cross_entropy forward", (8, 4), f32), ("cross_entropy value+grad", (8, 4), f32)]
    return main, tiny


# ----------------------------------------------------------------------------- report


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    return f"{s * 1e3:.2f} ms"


def fmt_sample(samples: list[float]) -> str:
    """The median, and half the spread when it is wider than 20% of it."""
    med = statistics.median(samples)
    spread = (max(samples) - min(samples)) / med
    return fmt_time(med) + (f" ±{spread * 50:.0f}%" if spread > 0.2 else "")


def _mb(v: float | str) -> str:
    if isinstance(v, str):
        print(f"  (memory measurement failed: {v})", file=sys.stderr)
        return "?"
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def memory_cell(case: Case) -> str:
    """'ours / torch' peak RSS increase in MB; value+grad also gives ours with out= (the timed call)."""
    import memory  # bench/memory.py, beside this file

    dt = np.dtype(case.dtype).name
    ours = _mb(memory.peak_mb(case.name, case.shape, dt, "ours"))
    if case.out is not None:
        ours += f" (out=: {_mb(memory.peak_mb(case.name, case.shape, dt, 'ours_out'))})"
    theirs = _mb(memory.peak_mb(case.name, case.shape, dt, "torch")) if case.torch else "—"
    return f"{ours} / {theirs}"


def run(quick: bool, with_memory: bool, output: Path | None) -> str:
    t_start = time.perf_counter()
    read_bw, copy_bw = memory_bandwidth(1 << 28 if quick else 1 << 29)
    rounds = 3 if quick else 7
    target = 0.01 if quick else 0.02
    main_specs, tiny_specs = case_list(quick)

    head = ("| function | size | dtype | threads | logitops | torch | numpy | jax | vs torch | GB/s "
            "| × memory floor | peak RSS MB (ours / torch) |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    print("\n".join(lines), flush=True)
    chart: list[tuple[str, float]] = []
    for spec in main_specs:
        case = make_case(*spec)
        mem = memory_cell(case) if with_memory and case.elements >= BIG else "—"
        dt = np.dtype(case.dtype).name
        for threads in case.threads:
            set_threads(threads)
            impls = {"ours": case.ours}
            if case.torch:
                impls["torch"] = case.torch
            if case.numpy and threads == 1:
                impls["numpy"] = case.numpy
            if case.jax and threads == 1:
                impls["jax"] = case.jax
            s = measure(impls, rounds, target, SETTLE_S if threads > 1 else 0.0)
            med = {k: statistics.median(v) for k, v in s.items()}
            ours = fmt_sample(s["ours"])
            tt = fmt_sample(s["torch"]) if "torch" in med else "—"
            nn = fmt_sample(s["numpy"]) if "numpy" in med else "—"
            jj = fmt_sample(s["jax"]) if "jax" in med else "—"
            sp = f"{med['torch'] / med['ours']:.1f}×" if "torch" in med else "—"
            moved = case.bytes_in + case.bytes_out
            gbs = moved / med["ours"] / 1e9
            floor = case.bytes_in / read_bw + case.bytes_out / copy_bw
            xfloor = med["ours"] / floor
            lines.append(
                f"| {case.name} | {case.size} | {dt} | {threads} | {ours} | {tt} | {nn} | {jj} | {sp} | "
                f"{gbs:.1f} | {xfloor:.1f} | {mem if threads == 1 else '—'} |"
            )
            print(lines[-1], flush=True)
            if threads == 1 and "torch" in med:
                chart.append((f"{case.name} {case.size} {dt}", med["torch"] / med["ours"]))
        del case

    tiny_head = "| call | size | logitops µs/call | torch µs/call | vs torch |"
    tiny_lines = [tiny_head, "|---|---|---|---|---|"]
    print("\n" + "\n".join(tiny_lines), flush=True)
    set_threads(1)
    for spec in tiny_specs:
        case = make_case(*spec)
        impls = {"ours": case.ours}
        if case.torch:
            impls["torch"] = case.torch
        s = measure(impls, max(rounds, 5), target)
        med = {k: statistics.median(v) for k, v in s.items()}
        tt = f"{med['torch'] * 1e6:.1f}" if "torch" in med else "—"
        sp = f"{med['torch'] / med['ours']:.1f}×" if "torch" in med else "—"
        tiny_lines.append(f"| {case.name} | {case.size} | {med['ours'] * 1e6:.2f} | {tt} | {sp} |")
        print(tiny_lines[-1], flush=True)
    set_threads(os.cpu_count() or 1)

    info = (
        f"logitops {lo.__version__} ({lo.isa()}), torch {torch.__version__ if torch else 'absent'}, "
        f"jax {jax.__version__ + ' / optax ' + optax.__version__ if jax else 'absent'}, "
        f"numpy {np.__version__}, Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs; memory floor measured in the same run: read {read_bw / 1e9:.1f} GB/s, "
        f"copy {copy_bw / 1e9:.1f} GB/s; {'quick subset, ' if quick else ''}"
        f"{time.perf_counter() - t_start:.0f} s."
    )
    legend = (
        f"Medians of {rounds} interleaved samples (±: half the spread, shown when wider than 20%); on 2 "
        f"threads a {SETTLE_S * 1000:.0f} ms pause follows each sample, so that torch's spinning OpenMP "
        "workers do not take the second core from the next library. "
        "*torch* is the same computation as torch users run it: the forward call, or forward + backward "
        "through autograd for gradient rows; *jax*: jax/optax jit-compiled (`jax.value_and_grad` for "
        "gradient rows), 1 thread only, when installed. *value+grad* is logitops' fused `*_value_and_grad`, writing "
        "into a reused `out=` buffer (*new grad*: without `out=`, a fresh gradient each call). "
        "*vs torch* = torch time / logitops time at the same thread count. *× memory floor* = our time / "
        "the time to read the inputs and write the outputs once at the measured bandwidth. "
        "*peak RSS*: how far a call raises the peak resident memory above its inputs', two calls in a fresh "
        "process at 1 thread; for value+grad, ours without `out=` and, in brackets, with it."
    )
    tiny_legend = (
        "Per-call time on tiny inputs (1 thread): the fixed cost of a call (argument checks, dispatch, "
        "allocation of the result). value+grad here is the plain call (a new gradient array), torch's "
        "the forward + backward through autograd."
    )
    report = (
        f"<!-- written by bench/run.py{' --quick' if quick else ''}; do not edit by hand -->\n"
        f"### Speed and memory\n\n{chr(10).join(lines)}\n\n{legend}\n\n"
        f"### Per-call overhead\n\n{chr(10).join(tiny_lines)}\n\n{tiny_legend}\n\n{info}\n"
    )
    print(f"\n{info}")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report)
        print(f"results written to {output}")
        if chart:
            _chart(chart, output.with_name("speedups.png"))
    return report


def _chart(chart: list[tuple[str, float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("(matplotlib not installed: no chart)")
        return
    labels = [c[0] for c in chart][::-1]
    vals = [c[1] for c in chart][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(labels) + 1.2))
    ax.barh(labels, vals, color=["#3b7dd8" if v >= 1 else "#d8683b" for v in vals])
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    lim = (min(0.5, min(vals) / 1.3), max(vals) * 1.5)  # room for the value labels
    ax.set_xlim(*lim)
    ax.set_xticks([t for t in (0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100) if lim[0] <= t <= lim[1]])
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("speed-up over torch CPU at 1 thread (log scale; right of the line: logitops is faster)")
    for y, v in enumerate(vals):
        ax.text(v, y, f" {v:.1f}×", va="center", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"chart written to {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a subset of the cases, under a minute")
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                    help="measure peak memory of the large cases (default: on, off with --quick)")
    ap.add_argument("--output", type=Path, default=None,
                    help="markdown file to write (default: bench/results.md; none with --quick)")
    args = ap.parse_args()
    with_memory = not args.quick if args.memory is None else args.memory
    output = args.output if args.output is not None else (None if args.quick else HERE / "results.md")
    run(args.quick, with_memory, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
