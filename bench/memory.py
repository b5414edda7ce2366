"""Peak memory of one benchmark call, measured in a fresh process per implementation and case.

A process that has already run other cases keeps their pages (allocator caches, arenas), so each
measurement forks a new child from a server that has only imported numpy, torch, logitops and the
bench (importing torch takes seconds; forking a prepared process takes milliseconds). The child
builds the case's inputs at one thread, resets the kernel's peak-RSS mark (/proc/self/clear_refs),
runs the call twice, and reports how far the peak rose above the resident size the inputs left:
memory the call itself needs (outputs, temporaries, torch's autograd graph), not the inputs.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing as mp
import os
import resource
import sys
from typing import Any

_KB = 1024  # /proc and ru_maxrss count kibibytes
_CTX: Any = None


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Lower the peak-RSS mark to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim() -> None:
    """Hand the heap's free pages back to the OS. Building the inputs leaves freed temporaries
    resident in the heap, where a later allocation would land without raising RSS."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _child(conn: Any, op: str, shape: tuple[int, ...], dtype: str, impl: str) -> None:
    try:
        import cases  # bench/cases.py, preloaded by the server
        import harness
        import numpy as np

        harness.set_threads(1)
        case = cases.build(op, shape, np.dtype(dtype).type, with_jax=False)
        fn = {"ours": case.ours_fresh or case.ours, "ours_out": case.ours if case.out is not None else None,
              "torch": case.torch}.get(impl)
        if fn is None:
            raise ValueError(f"case {op!r} {shape} has no implementation {impl!r}")
        if impl == "ours_out" and case.out is not None:
            case.out.fill(0)  # the caller's reusable buffer: resident before the call, like the inputs
        gc.collect()
        _trim()
        if _reset_peak():
            base = _status_kb("VmRSS:")
            fn()
            fn()
            peak = _status_kb("VmHWM:")
        else:  # no resettable mark: the lifetime peak, which the inputs' construction may dominate
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            fn()
            fn()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        unit = 1 if sys.platform == "darwin" and not os.path.exists("/proc") else _KB  # macOS: bytes
        conn.send(max(0, peak - base) * unit / 1e6)
    except BaseException as e:  # report, never hang the parent
        conn.send(f"{type(e).__name__}: {e}")
    finally:
        conn.close()


def _context() -> Any:
    global _CTX
    if _CTX is None:
        here = os.path.dirname(os.path.abspath(__file__))
        if here not in sys.path:
            sys.path.insert(0, here)
        try:
            _CTX = mp.get_context("forkserver")
            _CTX.set_forkserver_preload(["numpy", "torch", "logitops", "cases", "harness"])
        except ValueError:  # no forkserver on this platform: a fresh interpreter each time
            _CTX = mp.get_context("spawn")
    return _CTX


def peak_mb(op: str, shape: tuple[int, ...], dtype: str, impl: str, timeout: float = 300.0) -> float | str:
    """Peak RSS increase (MB, 1e6 bytes) of two calls of `impl` ("ours", "ours_out", "torch") on the
    case `op`/`shape`/`dtype` of bench/cases.py, or an error message."""
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(send, op, shape, dtype, impl))
    p.start()
    send.close()
    try:
        result: float | str = recv.recv() if recv.poll(timeout) else "timed out"
    except EOFError:  # the child died without a word (a crash)
        result = "child died"
    p.join(5)
    if p.is_alive():
        p.kill()
        p.join()
    recv.close()
    if result == "child died":
        result += f" (exit code {p.exitcode})"
    return result


def measure_case(case: Any) -> dict[str, float | str]:
    """peak_mb of each implementation of a bench/cases.py Case: "ours" (value+grad: without
    out=), "ours_out" (value+grad only: into the reused buffer, the timed call), "torch" (when
    the case has torch)."""
    import numpy as np

    dt = np.dtype(case.dtype).name
    impls = ["ours"] + (["ours_out"] if case.ours_fresh is not None else []) + (["torch"] if case.torch else [])
    return {impl: peak_mb(case.name, case.shape, dt, impl) for impl in impls}
