#!/usr/bin/env python
"""logitops vs torch (CPU) vs NumPy (and jax/optax when installed), measured side by side in one
process.

Every case (bench/cases.py) times each implementation interleaved (bench/harness.py), reports the
median and the speed-up over torch at the same thread count, and relates our time to the memory
floor measured here at start-up (how long merely reading the inputs and writing the outputs takes
on this machine). Large cases also report the peak memory of the call, ours and torch's, each
measured in a fresh process (bench/memory.py); tiny inputs get their own table of the time per
call (the fixed cost of a call: argument checks, dispatch, allocation). Prints markdown and writes
it to bench/results.md, and a chart of the speed-ups to bench/speedups.png when matplotlib is
installed (bench/report.py).

    python bench/run.py            # every case (a few minutes)
    python bench/run.py --quick    # a subset, under a minute, no memory column
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cases
import harness
from report import Report, memory_cell

HERE = Path(__file__).resolve().parent


def run(quick: bool, with_memory: bool, output: Path | None, only: str | None = None) -> str:
    t_start = time.perf_counter()
    read_bw, copy_bw = harness.memory_bandwidth(1 << 28 if quick else 1 << 29)
    rounds = 3 if quick else 7
    target_s = 0.01 if quick else 0.02
    main_specs, tiny_specs = cases.plan(quick)
    if only is not None:  # the cases whose name contains `only`
        main_specs = [s for s in main_specs if only in s[0]]
        tiny_specs = [s for s in tiny_specs if only in s[0]]
    report = Report(quick, rounds, read_bw, copy_bw)

    print("\n".join(report.main), flush=True)
    for spec in main_specs:
        case = cases.build(*spec)
        mem = "—"
        if with_memory and case.elements >= cases.BIG:
            import memory  # bench/memory.py: starts a fork server on first use

            mem = memory_cell(memory.measure_case(case))
        for threads in case.threads:
            print(report.add(case, threads, harness.time_case(case, threads, rounds, target_s), mem), flush=True)
        del case  # its inputs, before the next case's

    print("\n" + "\n".join(report.tiny), flush=True)
    for spec in tiny_specs:
        case = cases.build(*spec)
        print(report.add_call(case, harness.time_call(case, max(rounds, 5), target_s)), flush=True)
    harness.set_threads(os.cpu_count() or 1)

    elapsed = time.perf_counter() - t_start
    print(f"\n{report.footer(elapsed)}")
    if output is not None:
        report.write(output, elapsed)
    return report.markdown(elapsed)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a subset of the cases, under a minute")
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                    help="measure peak memory of the large cases (default: on, off with --quick)")
    ap.add_argument("--output", type=Path, default=None,
                    help="markdown file to write (default: bench/results.md; none with --quick)")
    ap.add_argument("--only", default=None, metavar="TEXT",
                    help="only the cases whose name contains TEXT (e.g. 'logitops.torch'); writes no file "
                         "unless --output is given")
    args = ap.parse_args()
    with_memory = not args.quick if args.memory is None else args.memory
    partial = args.quick or args.only is not None
    output = args.output if args.output is not None else (None if partial else HERE / "results.md")
    run(args.quick, with_memory, output, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
