"""The benchmark's record: the markdown table of speed and memory, the per-call overhead table, the
footer naming what ran where, and the chart of the speed-ups."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numpy as np
from cases import Case, jax_lib, torch_lib
from harness import SETTLE_S, Timing, memory_floor_s

import logitops as lo

MAIN_HEAD = ("| function | size | dtype | ISA | threads | logitops | torch | numpy | jax | vs torch | GB/s "
             "| × memory floor | peak RSS MB (ours / torch) |")
OUT_HEAD = "| function | size | dtype | ISA | default | out= | default / out= |"
OUT_TARGET = 1.15  # the default call's goal: within this factor of the out= call
TINY_HEAD = "| call | size | logitops µs/call | torch µs/call | vs torch |"
SPREAD_SHOWN = 0.2  # a sample's spread is shown when wider than this fraction of its median


def _rule(head: str) -> str:
    return "|" + "---|" * (head.count("|") - 1)


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    return f"{s * 1e3:.2f} ms"


def fmt_timing(t: Timing | None) -> str:
    """The median, and half the spread when it is wider than SPREAD_SHOWN of it; — when absent."""
    if t is None:
        return "—"
    return fmt_time(t.median) + (f" ±{t.spread * 50:.0f}%" if t.spread > SPREAD_SHOWN else "")


def _speedup(t: dict[str, Timing]) -> str:
    return f"{t['torch'].median / t['ours'].median:.1f}×" if "torch" in t else "—"


def _mb(v: float | str) -> str:
    if isinstance(v, str):
        print(f"  (memory measurement failed: {v})", file=sys.stderr)
        return "?"
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def memory_cell(peaks: dict[str, float | str]) -> str:
    """'ours / torch' peak RSS increase in MB from bench/memory.py's measure_case; value+grad also
    gives ours with out= (the timed call) in brackets."""
    ours = _mb(peaks["ours"])
    if "ours_out" in peaks:
        ours += f" (out=: {_mb(peaks['ours_out'])})"
    return f"{ours} / {_mb(peaks['torch']) if 'torch' in peaks else '—'}"


def cpu_model() -> str:
    """The CPU's marketing name (Linux: /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _load() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


class Report:
    """Rows added as they are measured (each returned as its markdown line, to print at once)."""

    def __init__(self, quick: bool, rounds: int, read_bw: float, copy_bw: float):
        self.quick, self.rounds = quick, rounds
        self.read_bw, self.copy_bw = read_bw, copy_bw
        self.main: list[str] = [MAIN_HEAD, _rule(MAIN_HEAD)]
        self.tiny: list[str] = [TINY_HEAD, _rule(TINY_HEAD)]
        self.outs: list[str] = [OUT_HEAD, _rule(OUT_HEAD)]
        self.chart: list[tuple[str, float]] = []  # (label, speed-up over torch) of the 1-thread rows

    def add(self, case: Case, threads: int, t: dict[str, Timing], memory: str = "—") -> str:
        ours = t["ours"].median
        gbs = (case.bytes_in + case.bytes_out) / ours / 1e9
        xfloor = ours / memory_floor_s(case, self.read_bw, self.copy_bw)
        dt = np.dtype(case.dtype).name
        cells = [case.name, case.size, dt, lo.isa(), str(threads), *(fmt_timing(t.get(k)) for k in ("ours", "torch", "numpy", "jax")),
                 _speedup(t), f"{gbs:.1f}", f"{xfloor:.1f}", memory if threads == 1 else "—"]
        self.main.append("| " + " | ".join(cells) + " |")
        if threads == 1 and "torch" in t:
            self.chart.append((f"{case.name} {case.size} {dt}", t["torch"].median / ours))
        return self.main[-1]

    def add_out(self, case: Case, t: dict[str, Timing]) -> str:
        ratio = t["default"].median / t["out="].median
        mark = "" if ratio <= OUT_TARGET else " (over)"
        dt = np.dtype(case.dtype).name
        self.outs.append(f"| {case.name} | {case.size} | {dt} | {lo.isa()} | {fmt_timing(t['default'])} "
                         f"| {fmt_timing(t['out='])} | {ratio:.2f}×{mark} |")
        return self.outs[-1]

    def add_call(self, case: Case, t: dict[str, Timing]) -> str:
        theirs = f"{t['torch'].median * 1e6:.1f}" if "torch" in t else "—"
        self.tiny.append(f"| {case.name} | {case.size} | {t['ours'].median * 1e6:.2f} | {theirs} | {_speedup(t)} |")
        return self.tiny[-1]

    def footer(self, elapsed_s: float) -> str:
        L, J = torch_lib(), jax_lib()
        versions = (
            f"logitops {lo.__version__} ({lo.isa()}), torch {L.version if L else 'absent'}, "
            f"jax {J.version if J else 'absent'}, numpy {np.__version__}, Python {platform.python_version()}, "
            f"{platform.machine()}, {os.cpu_count()} CPUs; memory floor measured in the same run: "
            f"read {self.read_bw / 1e9:.1f} GB/s, copy {self.copy_bw / 1e9:.1f} GB/s; "
            f"{'quick subset, ' if self.quick else ''}{elapsed_s:.0f} s."
        )
        machine = (f"CPU: {cpu_model()}; logitops ISA of every row: {lo.isa()} (`lo.isa()`; "
                   "`LOGITOPS_ISA=scalar` runs the portable path); result cache limit "
                   f"{lo.get_result_cache_limit() >> 20} MiB; load average at the end {_load()}.")
        return f"{versions}\n\n{machine}"

    def legend(self) -> str:
        return (
            f"Medians of {self.rounds} interleaved samples (±: half the spread, shown when wider than "
            f"{SPREAD_SHOWN:.0%}); on 2 threads a {SETTLE_S * 1000:.0f} ms pause follows each sample, so that "
            "torch's spinning OpenMP workers do not take the second core from the next library. "
            "*torch* is the same computation as torch users run it: the forward call, or forward + backward "
            "through autograd for gradient rows; *jax*: jax/optax jit-compiled (`jax.value_and_grad` for "
            "gradient rows), 1 thread only, when installed. *value+grad* is logitops' fused `*_value_and_grad`, "
            "writing into a reused `out=` buffer (*new grad*: without `out=`, a fresh gradient each call). "
            "*vs torch* = torch time / logitops time at the same thread count. *× memory floor* = our time / "
            "the time to read the inputs and write the outputs once at the measured bandwidth. "
            "*peak RSS*: how far a call raises the peak resident memory above its inputs', two calls in a fresh "
            "process at 1 thread; for value+grad, ours without `out=` and, in brackets, with it."
        )

    def out_legend(self) -> str:
        return (
            f"1 thread, medians of {self.rounds} interleaved samples: each function whose array result takes "
            "`out=`, called without it (*default*: a new result each call, from the result cache once one "
            "has been freed; see the README) and into a reused `out=` buffer, at every size whose result is "
            f"at least 1 MiB. The goal is default / out= <= {OUT_TARGET}; *(over)* marks a row above it."
        )

    TINY_LEGEND = (
        "Per-call time on tiny inputs (1 thread): the fixed cost of a call (argument checks, dispatch, "
        "allocation of the result). value+grad here is the plain call (a new gradient array), torch's "
        "the forward + backward through autograd."
    )

    def markdown(self, elapsed_s: float) -> str:
        nl = "\n"
        return (
            f"<!-- written by bench/run.py{' --quick' if self.quick else ''}; do not edit by hand -->\n"
            f"### Speed and memory\n\n{nl.join(self.main)}\n\n{self.legend()}\n\n"
            f"### Default vs out=\n\n{nl.join(self.outs)}\n\n{self.out_legend()}\n\n"
            f"### Per-call overhead\n\n{nl.join(self.tiny)}\n\n{self.TINY_LEGEND}\n\n{self.footer(elapsed_s)}\n"
        )

    def write(self, path: Path, elapsed_s: float) -> None:
        """The markdown at `path`, and the chart beside it as speedups.png (when matplotlib is installed)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.markdown(elapsed_s))
        print(f"results written to {path}")
        if self.chart:
            write_chart(self.chart, path.with_name("speedups.png"))


def write_chart(chart: list[tuple[str, float]], path: Path) -> None:
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
    plt.close(fig)
    print(f"chart written to {path}")
