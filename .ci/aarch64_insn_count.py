"""Instructions per element of the hot kernels on the aarch64 build, neon and scalar, counted
under qemu-user (Debian's qemu-user-static loads no TCG plugins, so: its `-d in_asm,exec,nochain`
log filtered to the code of logitops._core, each executed block weighted by its instruction
count). Usage, after .ci/aarch64 has made build/aarch64:
    python3 .ci/aarch64_insn_count.py [ROWS]
The workload is bench/insn_per_element.py (K = 1 call against 0 calls).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]
W = Path(os.environ.get("AARCH64_DIR", SRC / "build" / "aarch64"))  # what .ci/aarch64 made
ROOT = W / "root"
KERNELS = ("cross_entropy", "logsumexp", "log_sigmoid", "bce_with_logits")
TRACE = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")
INSN = re.compile(r"^0x([0-9a-f]+):")


def count(kernel: str, k: int, isa: str, rows: int, code_range: str) -> int:
    """Instructions executed in _core's code by the workload."""
    env = dict(os.environ, PYTHONPATH=f"{W / 'pkg'}:{W / 'site'}", LOGITOPS_ISA=isa, ROWS=str(rows),
               LOGITOPS_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        fifo = Path(tmp) / "log"
        os.mkfifo(fifo)
        result = {}

        def read() -> None:
            sizes: dict[str, int] = {}
            total = 0
            block: str | None = None
            with open(fifo, errors="replace") as f:
                for line in f:
                    m = TRACE.match(line)
                    if m:
                        total += sizes.get(m.group(1).lstrip("0"), 0)
                        continue
                    m = INSN.match(line)
                    if m:
                        if block is None:
                            block = m.group(1).lstrip("0")
                            sizes[block] = 0
                        sizes[block] += 1
                    else:
                        block = None
            result["total"] = total

        reader = threading.Thread(target=read)
        reader.start()
        subprocess.run(["qemu-aarch64-static", "-L", str(ROOT), "-d", "in_asm,exec,nochain", "-dfilter", code_range,
                        "-D", str(fifo), str(ROOT / "usr/bin/python3.11"), str(SRC / "bench/insn_per_element.py"),
                        kernel, str(k)], env=env, check=True)
        reader.join()
    return result["total"]


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    env = dict(os.environ, PYTHONPATH=f"{W / 'pkg'}:{W / 'site'}")
    where = subprocess.run(["qemu-aarch64-static", "-L", str(ROOT), str(ROOT / "usr/bin/python3.11"),
                            str(SRC / "bench/insn_per_element.py"), "--where"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()[0]
    lo, hi = where.split("-")
    code_range = f"0x{lo}..0x{hi}"
    n = rows * 32000
    print(f"instructions per element, aarch64 build under qemu ({rows} x 32000 float32, 1 thread)")
    for kernel in KERNELS:
        per = {isa: (count(kernel, 1, isa, rows, code_range) - count(kernel, 0, isa, rows, code_range)) / n
               for isa in ("neon", "scalar")}
        print(f"  {kernel:16s} neon {per['neon']:7.2f}   scalar {per['scalar']:7.2f}   "
              f"scalar/neon {per['scalar'] / per['neon']:.2f}", flush=True)


if __name__ == "__main__":
    main()
