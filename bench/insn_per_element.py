"""Instructions per element of the hot kernels, the stand-in for speed where there is no machine
to time on (the aarch64 build under qemu-user; README "aarch64").

  python bench/insn_per_element.py KERNEL K      runs KERNEL K times on its inputs (the workload);
  python bench/insn_per_element.py --where       prints the address range of logitops._core's code.
KERNEL: cross_entropy (forward, float32 rows of 32000 classes, int64 targets), logsumexp (the
same rows), log_sigmoid, bce_with_logits (float32 elements, reduction 'mean'); ROWS (environment,
default 64) rows of 32000 / ROWS*32000 elements. The count is the difference of K calls and 0
calls divided by K and by the elements: x86-64 by callgrind (every instruction of the process),
aarch64 by .ci/aarch64_insn_count.py (qemu's exec log, the instructions of _core's code only).
"""

from __future__ import annotations

import os
import sys

import numpy as np

import logitops as lo

ROWS = int(os.environ.get("ROWS", "64"))
C = 32000


def inputs(kernel: str):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, C), dtype=np.float32) * 3
    if kernel == "cross_entropy":
        t = rng.integers(0, C, ROWS)
        return lambda: lo.cross_entropy(x, t)
    if kernel == "logsumexp":
        return lambda: lo.logsumexp(x, axis=-1)
    if kernel == "log_sigmoid":
        return lambda: lo.log_sigmoid(x)
    if kernel == "bce_with_logits":
        t = rng.uniform(0, 1, x.shape).astype(np.float32)
        return lambda: lo.binary_cross_entropy_with_logits(x, t)
    raise SystemExit(f"unknown kernel {kernel}")


if __name__ == "__main__":
    if sys.argv[1] == "--where":
        for line in open("/proc/self/maps"):
            if "_core" in line and "r-xp" in line:
                print(line.split()[0])
        sys.exit()
    lo.set_num_threads(1)
    f = inputs(sys.argv[1])
    for _ in range(int(sys.argv[2])):
        f()
