"""Timing of the binary losses against torch, 1e7 float32 elements on one thread (not a test)."""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import logitops as lo


def med(fn, reps=15):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts) * 1e3  # the least disturbed run: the machine is shared


def main() -> None:
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 10**7
    lo.set_num_threads(1)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    t = (rng.random(n) < 0.5).astype(np.float32)
    p = rng.random(n).astype(np.float32)
    q = rng.random(16).astype(np.float32) * 2
    xt, tt, pt = torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(p)
    out = np.empty_like(x)

    X = xt.clone().requires_grad_()
    P = pt.clone().requires_grad_()

    def torch_logits():
        X.grad = None  # a fresh gradient buffer each call, as ours allocates none (out=)
        F.binary_cross_entropy_with_logits(X, tt).backward()

    def torch_probs():
        P.grad = None
        F.binary_cross_entropy(P, tt).backward()

    rows = [
        ("logits value+grad", lambda: lo.binary_cross_entropy_with_logits_value_and_grad(x, t, out=out), torch_logits),
        ("logits value+grad pos_weight(16,)", lambda: lo.binary_cross_entropy_with_logits_value_and_grad(
            x.reshape(-1, 16), t.reshape(-1, 16), pos_weight=q, out=out.reshape(-1, 16)), None),
        ("logits forward", lambda: lo.binary_cross_entropy_with_logits(x, t), lambda: F.binary_cross_entropy_with_logits(xt, tt)),
        ("probs value+grad", lambda: lo.binary_cross_entropy_value_and_grad(p, t, out=out), torch_probs),
        ("probs forward", lambda: lo.binary_cross_entropy(p, t), lambda: F.binary_cross_entropy(pt, tt)),
    ]
    print(f"n = {n:.0e} float32, one thread, isa {lo.isa()}; best of 15 runs, ms")
    for name, ours, theirs in rows:
        a = med(ours)
        b = med(theirs, 5) if theirs else float("nan")
        print(f"{name:36s} logitops {a:7.2f}   torch {b:7.2f}   x{b / a:5.1f}")


if __name__ == "__main__":
    main()
