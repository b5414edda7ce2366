"""cross_entropy on an input of more than 2^31 elements, checked against a float64 reference.

The large case is run by hand, never by default (float32 17000 x 128256 = 2.18e9 elements, 8.7 GB
of logits, ~10.2 GB of free memory, about two minutes per ISA):

    pytest -m slow tests/test_scale_2e31.py -s          # -s shows the errors per sampled row
    pytest -m slow tests/test_scale_2e31.py -k avx2     # one ISA only

It checks, with 64-bit element offsets in mind:
  1. lo.cross_entropy(x, y) (reduction "mean") against a float64 reference;
  2. lo.cross_entropy_value_and_grad(x, y, out=x): the loss again, and the gradient written over
     the logits (no second 8.7 GB buffer), compared with the reference on EVERY element, and
     reported separately for sampled rows: the first, the middle, the rows around element 2^31
     (the first rows whose offset no longer fits in an int32) and the last rows.

The reference never holds the input in float64: the logits are generated in row chunks, each
from its own seeded generator, so the second pass (after `out=x` has overwritten them) can
regenerate exactly the same values chunk by chunk. Pass/fail uses the spec's float32 rtol (1e-5)
with the absolute tolerance scaled by 1/N (a mean's gradient entries are ~1/(N*C) each, so the
spec's plain atol of 1e-6 would accept anything). The same check runs on a small input in the
default suite, so the checking code itself is exercised on every run.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

import logitops as lo

CHUNK_ROWS = 128  # rows per reference chunk: 128 x 128256 float64 = 131 MB of temporaries
RTOL = 1e-5
ATOL_PER_SAMPLE = 1e-6
# Beyond the logits themselves: the reference's chunk temporaries (a few float64 chunks, under
# 1 GB) and the interpreter.
HEADROOM_GB = 1.5


def chunk_logits(seed: int, k: int, r0: int, r1: int, classes: int, target: np.ndarray) -> np.ndarray:
    """Rows r0:r1 of the input (float32), identical every time they are asked for."""
    g = np.random.default_rng([seed, k])
    x = g.standard_normal((r1 - r0, classes), dtype=np.float32)
    x *= np.float32(2.0)
    # Every 7th row a confident correct prediction (the target logit 30 above the rest), so the
    # loss of the rows whose softmax is almost one-hot is checked at this scale too.
    rows = np.arange(r0, r1)
    conf = rows % 7 == 0
    x[conf, target[rows[conf]]] += np.float32(30.0)
    return x


def chunks(n: int):
    for k, r0 in enumerate(range(0, n, CHUNK_ROWS)):
        yield k, r0, min(n, r0 + CHUNK_ROWS)


def ref_rows(x32: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log-sum-exp, loss) of each row in float64."""
    x = x32.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    np.subtract(x, m, out=x)
    np.exp(x, out=x)
    lse = m[:, 0] + np.log(x.sum(axis=1))
    loss = lse - x32[np.arange(len(y)), y].astype(np.float64)
    return lse, loss


def ref_grad(x32: np.ndarray, y: np.ndarray, lse: np.ndarray, n: int) -> np.ndarray:
    """(softmax - onehot) / N in float64 for these rows (the gradient of the mean loss)."""
    g = x32.astype(np.float64)
    rows = np.arange(len(y))
    xy = g[rows, y].copy()
    # p_y - 1 = -others / (1 + others), others = sum over j != y of exp(x_j - x_y): exp(x_y - lse)
    # - 1 would cancel for confident rows (a float64 relative error of 1e-5 where p_y ~ 1 - 1e-11).
    np.subtract(g, xy[:, None], out=g)
    np.exp(g, out=g)
    g[rows, y] = 0.0
    others = g.sum(axis=1)
    np.multiply(g, np.exp(xy - lse)[:, None], out=g)
    g[rows, y] = -others / (1.0 + others)
    g /= n
    return g


def _proc_gb(path: str, key: str) -> float | None:
    """A "key: N kB" line of a /proc file, in GB (None if unreadable)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return None


def vm_hwm_gb() -> float:
    gb = _proc_gb("/proc/self/status", "VmHWM")
    return float("nan") if gb is None else gb


def mem_available_gb() -> float:
    gb = _proc_gb("/proc/meminfo", "MemAvailable")
    return float("inf") if gb is None else gb  # unknown: try


def check_cross_entropy(n: int, c: int, seed: int = 2031) -> list[str]:
    """Runs both checks on an n x c float32 input; prints what it measured and returns the
    failures (empty when everything passed)."""
    total = n * c
    print(f"\nlogitops {lo.__version__} ({lo.isa()}), {lo.get_num_threads()} threads, input float32 "
          f"{n} x {c} = {total:,} elements ({total / 2**31:.2f} x 2^31), {total * 4 / 1e9:.1f} GB", flush=True)
    first_big = -(-(2**31) // c)  # first row whose first element lies at offset >= 2^31
    sample = sorted({0, 1, n // 2, first_big - 1, first_big, n - 2, n - 1} & set(range(n)))

    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n, dtype=np.int64)

    # Pass 1: fill the input chunk by chunk and take each row's float64 log-sum-exp and loss.
    t0 = time.perf_counter()
    x = np.empty((n, c), dtype=np.float32)
    lse = np.empty(n)
    losses = np.empty(n)
    for k, r0, r1 in chunks(n):
        xc = chunk_logits(seed, k, r0, r1, c, y)
        x[r0:r1] = xc
        lse[r0:r1], losses[r0:r1] = ref_rows(xc, y[r0:r1])
    ref_loss = math.fsum(losses.tolist()) / n
    print(f"input + float64 reference: {time.perf_counter() - t0:.1f} s; reference mean loss {ref_loss!r}")

    failures: list[str] = []

    def check_loss(what: str, got: float) -> None:
        err = abs(float(got) - ref_loss)
        rel = err / abs(ref_loss)
        good = math.isfinite(float(got)) and rel <= RTOL
        print(f"  {what}: {float(got)!r}  abs err {err:.3e}  rel err {rel:.3e}  {'ok' if good else 'BAD'}")
        if not good:
            failures.append(f"{what} {float(got)!r} vs float64 reference {ref_loss!r} (rel err {rel:.3e} > {RTOL:g})")

    # 1. Forward.
    t0 = time.perf_counter()
    loss_f = lo.cross_entropy(x, y)
    dt_f = time.perf_counter() - t0
    print(f"cross_entropy forward (mean): {dt_f:.3f} s")
    check_loss("cross_entropy loss", loss_f)

    # 2. Fused value and gradient, written over the logits.
    t0 = time.perf_counter()
    loss_g, grad = lo.cross_entropy_value_and_grad(x, y, out=x)
    dt_g = time.perf_counter() - t0
    print(f"cross_entropy_value_and_grad(out=input): {dt_g:.3f} s; peak RSS {vm_hwm_gb():.2f} GB")
    if not (grad is x or (grad.shape == x.shape and np.shares_memory(grad, x))):
        failures.append("cross_entropy_value_and_grad(out=x) did not write its gradient into x")
    check_loss("cross_entropy_value_and_grad loss", loss_g)

    # Pass 2: regenerate each chunk and compare every gradient element.
    t0 = time.perf_counter()
    worst_abs = worst_rel = 0.0
    worst_row = -1
    bad_elems = nonfinite = 0
    first_bad_row = -1
    per_row: dict[int, tuple[float, float]] = {}
    tiny = np.finfo(np.float32).tiny
    for k, r0, r1 in chunks(n):
        xc = chunk_logits(seed, k, r0, r1, c, y)
        ref = ref_grad(xc, y[r0:r1], lse[r0:r1], n)
        got = grad[r0:r1].astype(np.float64)
        nonfinite += int(np.count_nonzero(~np.isfinite(got)))
        err = np.abs(got - ref)
        outside = ~(err <= RTOL * np.abs(ref) + ATOL_PER_SAMPLE / n)  # NaN counts as outside
        if first_bad_row < 0 and outside.any():
            first_bad_row = r0 + int(np.argmax(outside.any(axis=1)))
        bad_elems += int(np.count_nonzero(outside))
        rel = err / np.maximum(np.abs(ref), tiny)
        row_abs, row_rel = err.max(axis=1), rel.max(axis=1)
        i = int(np.argmax(row_rel))
        if row_rel[i] > worst_rel:
            worst_rel, worst_row = float(row_rel[i]), r0 + i
        worst_abs = max(worst_abs, float(row_abs.max()))
        for r in sample:
            if r0 <= r < r1:
                per_row[r] = (float(row_abs[r - r0]), float(row_rel[r - r0]))
    print(f"gradient check (all {total:,} elements): {time.perf_counter() - t0:.1f} s")
    for r in sample:
        a, rr = per_row[r]
        where = "beyond 2^31" if r * c >= 2**31 else "crosses 2^31" if (r + 1) * c > 2**31 else "below 2^31"
        print(f"  row {r:>6} (offset {r * c:>13,}, {where}): max abs err {a:.3e}  max rel err {rr:.3e}")
    print(f"  all rows: max abs err {worst_abs:.3e}, max rel err {worst_rel:.3e} (row {worst_row}); "
          f"elements outside rtol {RTOL:g} + atol {ATOL_PER_SAMPLE:g}/N: {bad_elems}; non-finite: {nonfinite}")
    print(f"times: forward {dt_f:.3f} s, value+grad {dt_g:.3f} s "
          f"({total * 4 / dt_f / 1e9:.1f} / {2 * total * 4 / dt_g / 1e9:.1f} GB/s)")
    if bad_elems:
        failures.append(f"{bad_elems} gradient elements outside rtol {RTOL:g} + atol {ATOL_PER_SAMPLE:g}/N "
                        f"(first in row {first_bad_row}, offset {first_bad_row * c:,})")
    if nonfinite:
        failures.append(f"{nonfinite} non-finite gradient elements")
    return failures


def test_cross_entropy_small_input_against_float64_reference():
    # The same checks on 3 chunks (the last one partial) with confident rows among them: keeps the
    # checking code honest between the hand-run large checks.
    failures = check_cross_entropy(n=2 * CHUNK_ROWS + 37, c=1000)
    assert not failures, "; ".join(failures)


@pytest.mark.slow
def test_cross_entropy_beyond_2e31_elements_against_float64_reference():
    n, c = 17000, 128256
    assert n * c > 2**31
    need_gb = n * c * 4 / 1e9 + HEADROOM_GB
    if mem_available_gb() < need_gb:
        pytest.skip(f"needs ~{need_gb:.1f} GB of free memory, {mem_available_gb():.1f} GB available")
    failures = check_cross_entropy(n, c)
    assert not failures, "; ".join(failures)
