#!/usr/bin/env python
"""Cross-entropy over a logits array larger than this machine's memory, with logitops.dask on a
distributed.LocalCluster, and the same data through a NumPy-only chunked loop as the floor.

The logits (N, C) float32 never exist whole: each block of rows is generated from (seed, block
index) inside its task — by default a random tile of TILE rows repeated over the block (written at
memory speed, so the loss is timed, not the random number generator; `--rng normal` draws every
element instead) — and its class targets likewise. The loss is the "mean" over all rows, from the
blocks' partials (lo.loss_partials), so the cluster and the loop must agree to rounding; both
numbers are printed.

    python bench/dask_eval.py --gb 40                 # the issue's size: 40 GB of float32 logits
    python bench/dask_eval.py --gb 2 --skip-numpy     # a quick look

Reports wall time, throughput of logits (GB/s) and the peak resident memory of each worker
process (ru_maxrss: its whole life, imports included) and of the NumPy loop's process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TILE = 1024  # rows of the random tile a block repeats


def make_block(seed: int, index: int, rows: int, classes: int, rng_kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Block `index` of the logits and its targets, from the seed alone (the same in every process)."""
    rng = np.random.default_rng([seed, index])
    if rng_kind == "normal":
        x = rng.standard_normal((rows, classes), dtype=np.float32)
        x *= 3
    else:
        tile = rng.standard_normal((min(TILE, rows), classes), dtype=np.float32) * 3
        x = np.empty((rows, classes), np.float32)
        for r in range(0, rows, tile.shape[0]):  # (np.tile would allocate its result twice over)
            n = min(tile.shape[0], rows - r)
            x[r : r + n] = tile[:n]
    y = rng.integers(0, classes, rows)
    return x, y


def layout(gb: float, classes: int, block_mb: float) -> tuple[int, int, int]:
    """(rows per block, blocks, total rows) for `gb` GB of float32 logits in blocks of ~block_mb MB."""
    rows = max(1, int(block_mb * 1e6 / (4 * classes)))
    total = int(gb * 1e9 / (4 * classes))
    blocks = -(-total // rows)
    return rows, blocks, total


def _block_rows(i: int, rows: int, total: int) -> int:
    return min(rows, total - i * rows)


def run_numpy(args: argparse.Namespace) -> dict:
    """The floor: one process, a loop over the same blocks, partials combined at the end."""
    import logitops as lo

    rows, blocks, total = layout(args.gb, args.classes, args.block_mb)
    t0 = time.perf_counter()
    parts = []
    for i in range(blocks):
        x, y = make_block(args.seed, i, _block_rows(i, rows, total), args.classes, args.rng)
        parts.append(lo.loss_partials(lo.cross_entropy, x, y))
        del x, y
    loss = lo.combine_partials(parts, "mean", np.float32)
    dt = time.perf_counter() - t0
    return {"loss": float(loss), "seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": lo.get_num_threads()}


def run_dask(args: argparse.Namespace) -> dict:
    import dask.array as da
    import distributed

    import logitops.dask as ld

    rows, blocks, total = layout(args.gb, args.classes, args.block_mb)
    chunks = tuple(_block_rows(i, rows, total) for i in range(blocks))

    def logits(block_info=None):
        i = block_info[None]["chunk-location"][0]
        return make_block(args.seed, i, chunks[i], args.classes, args.rng)[0]

    def targets(block_info=None):
        i = block_info[None]["chunk-location"][0]
        # (the targets come from the same stream after the logits: make the block, keep y)
        return make_block(args.seed, i, chunks[i], args.classes, args.rng)[1] if args.rng == "normal" else \
            _targets_only(args.seed, i, chunks[i], args.classes)

    X = da.map_blocks(logits, chunks=(chunks, (args.classes,)), dtype=np.float32,
                      meta=np.empty((0, 0), np.float32))
    Y = da.map_blocks(targets, chunks=(chunks,), dtype=np.int64, meta=np.empty((0,), np.int64))
    loss = ld.cross_entropy(X, Y)
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                  memory_limit=args.memory_limit, dashboard_address=None,
                                  env={"LOGITOPS_NUM_THREADS": "1"}) as cluster, distributed.Client(cluster) as client:
        client.run(lambda: __import__("logitops"))  # imports before the clock starts
        t0 = time.perf_counter()
        value = client.compute(loss, sync=True)
        dt = time.perf_counter() - t0
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"loss": float(value), "seconds": dt, "peak_worker_rss_mb": sorted(peaks.values()), "tasks": len(loss.__dask_graph__())}


def _targets_only(seed: int, index: int, rows: int, classes: int) -> np.ndarray:
    """The tile generator's targets without making the logits block (the same draws: the tile first)."""
    rng = np.random.default_rng([seed, index])
    rng.standard_normal((min(TILE, rows), classes), dtype=np.float32)
    return rng.integers(0, classes, rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=40.0, help="size of the float32 logits in GB (1e9 bytes)")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--block-mb", type=float, default=128.0, help="logits per block, MB")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="2GiB", help="per worker (distributed's spill/pause/kill limit)")
    ap.add_argument("--rng", choices=["tile", "normal"], default="tile")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-numpy", action="store_true")
    ap.add_argument("--numpy-only", action="store_true", help=argparse.SUPPRESS)  # the floor's child process
    args = ap.parse_args()
    if args.numpy_only:
        print(json.dumps(run_numpy(args)))
        return
    rows, blocks, total = layout(args.gb, args.classes, args.block_mb)
    gb = total * args.classes * 4 / 1e9
    print(f"logits ({total}, {args.classes}) float32 = {gb:.2f} GB in {blocks} blocks of {rows} rows "
          f"({rows * args.classes * 4 / 1e6:.0f} MB); generator: {args.rng}; machine: {os.cpu_count()} CPUs, "
          f"{_mem_gb():.1f} GB RAM ({_mem_gb('MemAvailable'):.1f} GB available)")
    d = run_dask(args)
    print(f"dask  ({args.workers} workers x 1 thread, memory_limit {args.memory_limit}): {d['seconds']:.1f} s, "
          f"{gb / d['seconds']:.3f} GB/s, peak worker RSS {', '.join(f'{m:.0f}' for m in d['peak_worker_rss_mb'])} MB, "
          f"{d['tasks']} tasks, loss {d['loss']!r}")
    if not args.skip_numpy:
        r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--numpy-only", *sys.argv[1:]],
                           capture_output=True, text=True, check=True)
        n = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"numpy loop (1 process, {n['threads']} kernel threads): {n['seconds']:.1f} s, {gb / n['seconds']:.3f} GB/s, "
              f"peak RSS {n['peak_rss_mb']:.0f} MB, loss {n['loss']!r}")
        print(f"relative difference of the two losses: {abs(d['loss'] - n['loss']) / abs(n['loss']):.2e}")


def _mem_gb(key: str = "MemTotal") -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024**2
    return float("nan")


if __name__ == "__main__":
    main()
