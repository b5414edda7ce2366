#!/usr/bin/env python
"""The LLM-head group: linear cross-entropy value + all three gradients, ours against torch's
naive F.cross_entropy(h @ W.T, y) + backward, torch's chunked F.linear_cross_entropy
(options=LinearCrossEntropyOptions()), and the three matrix products alone (h @ W.T, G @ W,
G.T @ h through np.matmul: the floor any chunked implementation pays).

Each (case, implementation) runs in a fresh forked child: inputs built, one warm-up call, then
`--repeats` timed calls (median reported); peak RSS is the kernel's high-water mark above the
resident size after the inputs exist (/proc/self/clear_refs), minus the outputs (grad_input and
grad_weight) each call allocates: the memory the call needs beyond its inputs and outputs.

    python bench/linear_ce.py                 # N=4096, D=1024, V=32000 and V=128256
    python bench/linear_ce.py --repeats 3 --cases 4096x1024x32000
    OPENBLAS_NUM_THREADS=1 python bench/linear_ce.py   # one thread everywhere

Threads: OPENBLAS_NUM_THREADS (NumPy's BLAS reads it at import) if set, else every CPU; torch
and logitops get the same number.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time

import numpy as np

CASES = {"4096x1024x32000": (4096, 1024, 32000), "4096x1024x128256": (4096, 1024, 128256)}
IMPLS = ("products", "ours", "torch_naive", "torch_chunked")
THREADS = int(os.environ.get("OPENBLAS_NUM_THREADS") or os.cpu_count() or 1)


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _child(impl: str, N: int, D: int, V: int, repeats: int, conn) -> None:
    import logitops as lo

    lo.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    h = rng.standard_normal((N, D), dtype=np.float32)
    W = (rng.standard_normal((V, D), dtype=np.float32) * 0.03).astype(np.float32)
    y = rng.integers(0, V, N)
    if impl == "products":
        lce = lo._linear_cross_entropy
        chunk = lce.default_chunk_size(N, V, D, 4)
        buf = np.empty((chunk, V), np.float32)
        gh = np.empty((N, D), np.float32)
        gW = np.empty((V, D), np.float32)
        vb = lce._GRAD_WEIGHT_BLOCK_BYTES // (D * 4)
        block = np.empty((vb, D), np.float32)

        def call():  # the three products as ours runs them (same chunks and blocks), nothing else
            for i0 in range(0, N, chunk):
                hc = h[i0:i0 + chunk]
                g = buf[: len(hc)]
                np.matmul(hc, W.T, out=g)
                np.matmul(g, W, out=gh[i0:i0 + chunk])
                if i0 == 0:
                    np.matmul(g.T, hc, out=gW)
                else:
                    for v0 in range(0, V, vb):
                        v1 = min(V, v0 + vb)
                        np.matmul(g[:, v0:v1].T, hc, out=block[: v1 - v0])
    elif impl == "ours":
        def call():
            return lo.linear_cross_entropy_value_and_grad(h, W, y)
    else:
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(THREADS)
        th = torch.from_numpy(h).requires_grad_(True)
        tW = torch.from_numpy(W).requires_grad_(True)
        ty = torch.from_numpy(y)
        opts = torch.nn.LinearCrossEntropyOptions() if impl == "torch_chunked" else None

        def call():
            th.grad = tW.grad = None
            if opts is None:
                loss = F.cross_entropy(th @ tW.T, ty)
            else:
                loss = F.linear_cross_entropy(th, tW, ty, options=opts)
            loss.backward()
            return loss.item(), th.grad, tW.grad
    out = call()  # warm-up; its outputs stay alive, so the peak counts only what a call adds
    del out
    rss0 = _status_kb("VmRSS:")
    _reset_peak()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
        del out
    peak = _status_kb("VmHWM:")
    # Every implementation but "products" (which writes into preallocated arrays) allocates its
    # outputs, grad_input and grad_weight, in each call: they are not counted.
    outputs = 0 if impl == "products" else (N * D + V * D) * 4
    conn.send((statistics.median(times), min(times), (peak - rss0) * 1024 - outputs))


def measure(impl: str, N: int, D: int, V: int, repeats: int) -> tuple[float, float, int]:
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=_child, args=(impl, N, D, V, repeats, b))
    p.start()
    r = a.recv()
    p.join()
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--impls", nargs="*", default=list(IMPLS))
    args = ap.parse_args()
    for name in args.cases:
        N, D, V = CASES[name]
        import logitops as lo

        chunk = lo._linear_cross_entropy.default_chunk_size(N, V, D, 4)
        print(f"## N={N} D={D} V={V} float32, chunk={chunk}, {THREADS} threads")
        print("| implementation | median s | min s | peak above inputs+outputs MB |")
        print("| --- | --- | --- | --- |")
        res = {}
        for impl in args.impls:
            med, best, peak = measure(impl, N, D, V, args.repeats)
            res[impl] = (med, peak)
            print(f"| {impl} | {med:.3f} | {best:.3f} | {peak / 2**20:.0f} |", flush=True)
        if "ours" in res and "products" in res:
            print(f"\nours / products: {res['ours'][0] / res['products'][0]:.3f} (target <= 1.15)")
            budget = 2 * chunk * V * 4 + (64 << 20)
            print(f"ours' peak {res['ours'][1] / 2**20:.0f} MB vs budget 2*chunk*V*4 + 64 MB = {budget / 2**20:.0f} MB")
        for t in ("torch_naive", "torch_chunked"):
            if t in res and "ours" in res:
                print(f"{t} / ours: {res[t][0] / res['ours'][0]:.2f}x")
        print()


if __name__ == "__main__":
    main()
