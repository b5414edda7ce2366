"""Scratch timing of the multiclass losses (not part of the bench table): best of k runs, 1 thread."""
import sys
import time

import numpy as np

import logitops as lo

lo.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
rng = np.random.default_rng(0)


def best(f, k=7):
    """Best CPU time of k calls: on a shared machine wall time counts other processes' turns."""
    f()
    ts = []
    for _ in range(k):
        t = time.process_time()
        f()
        ts.append(time.process_time() - t)
    return min(ts)


def row(name, t, target=None):
    extra = f"  (target {target})" if target else ""
    print(f"{name:48s} {t * 1e3:9.3f} ms{extra}")


for n, c in [(2048, 32000), (256, 128256)]:
    x = rng.standard_normal((n, c), dtype=np.float32)
    y = rng.integers(0, c, n)
    out = np.empty_like(x)
    row(f"forward {n}x{c}", best(lambda: lo.cross_entropy(x, y)), "30 ms" if c == 32000 else None)
    row(f"value+grad {n}x{c} (out=buffer)", best(lambda: lo.cross_entropy_value_and_grad(x, y, out=out)),
        "60 ms" if c == 32000 else "30 ms")
    xc = x.copy()
    row(f"value+grad {n}x{c} (out=input)", best(lambda: lo.cross_entropy_value_and_grad(xc, y, out=xc)))
    row(f"value+grad {n}x{c} (new array)", best(lambda: lo.cross_entropy_value_and_grad(x, y)))
    row(f"logsumexp {n}x{c} (reference)", best(lambda: lo.logsumexp(x)))

x = rng.standard_normal((8, 4), dtype=np.float32)
y = rng.integers(0, 4, 8)
k = 20000
t = time.process_time()
for _ in range(k):
    lo.cross_entropy(x, y)
print(f"{'forward 8x4 per call':48s} {(time.process_time() - t) / k * 1e6:9.3f} us  (target 3 us)")
t = time.process_time()
for _ in range(k):
    lo.cross_entropy_value_and_grad(x, y)
print(f"{'value+grad 8x4 per call':48s} {(time.process_time() - t) / k * 1e6:9.3f} us")

x = rng.standard_normal((16, 21, 128, 128), dtype=np.float32)
y = rng.integers(0, 21, (16, 128, 128))
row("forward 16x21x128x128", best(lambda: lo.cross_entropy(x, y)))
row("value+grad 16x21x128x128", best(lambda: lo.cross_entropy_value_and_grad(x, y)))
row("value+grad 16x21x128x128 smoothing 0.1", best(lambda: lo.cross_entropy_value_and_grad(x, y, label_smoothing=0.1)))
xt = np.ascontiguousarray(np.moveaxis(x, 1, -1))
xcl = np.moveaxis(xt, -1, 1)
row("forward 16x21x128x128 channels-last", best(lambda: lo.cross_entropy(xcl, y)))
x = rng.standard_normal((8192, 1000), dtype=np.float32)
y = rng.integers(0, 1000, 8192)
row("forward 8192x1000", best(lambda: lo.cross_entropy(x, y)))
row("value+grad 8192x1000", best(lambda: lo.cross_entropy_value_and_grad(x, y)))
row("value+grad 8192x1000 smoothing+weight", best(lambda: lo.cross_entropy_value_and_grad(
    x, y, weight=np.ones(1000, np.float32), label_smoothing=0.1)))
p = rng.random((8192, 1000), dtype=np.float32)
row("value+grad 8192x1000 probs", best(lambda: lo.cross_entropy_value_and_grad(x, p)))
