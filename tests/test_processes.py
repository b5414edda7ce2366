"""The thread pool across process boundaries, each case in a fresh interpreter with a timeout:

- fork() after the pool has run (os.fork, multiprocessing's 'fork' Pool, ProcessPoolExecutor,
  a fork while another thread is inside a pooled kernel, a child that forks again): the child
  computes the parent's results, bit for bit, instead of hanging;
- interpreter exit while daemon threads are inside kernels (normal end, sys.exit, os._exit,
  right after a call): the exit status is the script's, with no "terminate called" abort;
- threads that cannot be created (RLIMIT_AS): correct results on fewer threads, said once;
- LOGITOPS_NUM_THREADS: a positive integer only (capped at 1024), else a message and the
  default; set_num_threads capped at 1024 by the C++ core.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import logitops as lo

PKG_DIR = str(Path(lo.__file__).parent.parent)
TIMEOUT = 60  # seconds; a hang is the failure these tests look for

# Large enough that each call is cut into many chunks and so really uses the pool.
PREAMBLE = """
import os, sys, threading, time
import numpy as np
import logitops as lo

rng = np.random.default_rng(0)
x = rng.standard_normal((1024, 2048)).astype(np.float32)  # 64 chunks in logsumexp
t = rng.integers(0, 2048, 1024)
v = (rng.standard_normal(300_000) * 8).astype(np.float32)  # 5 chunks in sigmoid

def work():
    return [lo.logsumexp(x), np.asarray(lo.cross_entropy(x, t)), lo.sigmoid(v)]

def same(a, b):
    return len(a) == len(b) and all(np.array_equal(p, q) for p, q in zip(a, b))

def in_child(fn):
    \"\"\"fn() in a forked child; the child's exit code (0: right results).\"\"\"
    pid = os.fork()
    if pid == 0:
        code = 5
        try:
            code = fn()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

def threads_now():
    return len(os.listdir("/proc/self/task"))

def check_work():
    # In a forked child (which has no other threads): 0 if work() gives the parent's results
    # and the pool really ran them on get_num_threads() threads, not the caller alone.
    if not same(work(), ref):
        return 3
    return 0 if threads_now() == lo.get_num_threads() else 6

lo.set_num_threads(2)
ref = work()
"""


def run_python(code: str, isa: str, preamble: bool = True, **env_vars: str) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter; on timeout kills its whole process group (forked
    children included) and fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGITOPS_")}
    env["LOGITOPS_ISA"] = isa
    env.update(env_vars)
    env["PYTHONPATH"] = PKG_DIR + os.pathsep + env.get("PYTHONPATH", "")
    source = (PREAMBLE if preamble else "") + textwrap.dedent(code)
    # Python 3.12+ warns about fork() in a process with threads; that is what is tested here.
    proc = subprocess.Popen([sys.executable, "-W", "ignore::DeprecationWarning", "-c", source], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"hung for {TIMEOUT} s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_ok(r: subprocess.CompletedProcess, returncode: int = 0) -> None:
    assert r.returncode == returncode, f"exit status {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "terminate" not in r.stderr, r.stderr


# ----------------------------------------------------------------------------- fork


def test_fork_after_pooled_call(isa):
    r = run_python("print(in_child(check_work))", isa)
    assert_ok(r)
    assert r.stdout.split() == ["0"]


def test_fork_child_changes_thread_count(isa):
    code = """
    def child():
        lo.set_num_threads(3)
        first = check_work()
        lo.set_num_threads(1)
        return first or (0 if same(work(), ref) else 3)
    print(in_child(child), same(work(), ref))  # and the parent's pool still works
    """
    r = run_python(code, isa)
    assert_ok(r)
    assert r.stdout.split() == ["0", "True"]


def test_fork_in_a_forked_child(isa):
    code = """
    def child():
        return check_work() or in_child(check_work) or check_work()
    print(in_child(child))
    """
    r = run_python(code, isa)
    assert_ok(r)
    assert r.stdout.split() == ["0"]


def test_fork_while_another_thread_is_in_a_pooled_kernel(isa):
    """The other thread spends nearly all its time inside pooled calls (holding the pool), so
    most forks copy a pool in the middle of a job."""
    code = """
    stop = threading.Event()
    calls = [0]
    def loop():
        while not stop.is_set():
            lo.logsumexp(x)
            calls[0] += 1
    th = threading.Thread(target=loop)
    th.start()
    while calls[0] == 0:
        time.sleep(0.001)
    codes = [in_child(check_work) for _ in range(8)]
    stop.set()
    th.join()
    print(*codes, same(work(), ref))
    """
    r = run_python(code, isa)
    assert_ok(r)
    assert r.stdout.split() == ["0"] * 8 + ["True"]


def test_multiprocessing_fork_pool_map(isa):
    code = """
    import multiprocessing as mp
    def task(i):
        return lo.logsumexp(x[i * 256:(i + 1) * 256]), threads_now()  # 16 chunks each
    with mp.get_context("fork").Pool(2) as p:
        got = p.map(task, range(4))
    print(np.array_equal(np.concatenate([g[0] for g in got]), ref[0]), *[g[1] for g in got])
    """
    r = run_python(code, isa)
    assert_ok(r)
    assert r.stdout.split() == ["True"] + ["2"] * 4  # each worker process: itself and a pool thread


def test_process_pool_executor_fork(isa):
    code = """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    def task(i):
        return check_work()
    with ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("fork")) as ex:
        print(*ex.map(task, range(4)))
    """
    r = run_python(code, isa)
    assert_ok(r)
    assert r.stdout.split() == ["0"] * 4


# ----------------------------------------------------------------------------- exit

DAEMONS = """
started = threading.Semaphore(0)
def pooled():
    lo.logsumexp(x); started.release()
    while True:
        lo.logsumexp(x)
def inline():  # one chunk: runs on the calling thread without the pool
    y = x[:4]
    lo.logsumexp(y); started.release()
    while True:
        lo.logsumexp(y)
for f in (pooled, pooled, inline):
    threading.Thread(target=f, daemon=True).start()
for _ in range(3):
    started.acquire()
time.sleep(0.05)
"""


@pytest.mark.parametrize("ending,returncode", [
    ("pass", 0),
    ("sys.exit(3)", 3),
    ("raise SystemExit(0)", 0),
    ("os._exit(4)", 4),
    ("lo.logsumexp(x)", 0),  # exit right after a pooled call of its own
], ids=["end", "sys.exit", "SystemExit", "os._exit", "after_call"])
def test_exit_with_daemon_threads_in_kernels(isa, ending, returncode):
    r = run_python(DAEMONS + ending + "\n", isa)
    assert_ok(r, returncode)


def test_exit_right_after_a_pooled_call(isa):
    r = run_python("work()\n", isa)
    assert_ok(r)
    assert r.stderr == ""


# ----------------------------------------------------------------------------- no threads


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="an address-space cap starves ASan's shadow memory and allocator, not our pool")
def test_threads_that_cannot_be_created(isa):
    """Address space capped just above what the process maps: a thread stack (8 MB by default)
    cannot be mapped. Calls still succeed, on the calling thread, and a line says so once."""
    code = """
    import resource
    lo.set_num_threads(1)
    ref = work()  # allocations reused below
    def mapped():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
    stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
    stack = 32 << 20 if stack == resource.RLIM_INFINITY else stack
    limit = mapped() + min(4 << 20, stack // 2)
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    lo.set_num_threads(4)
    results = [0 if same(work(), ref) else 3 for _ in range(3)]
    lo.set_num_threads(2)  # a new count tries again, and fails again
    results.append(0 if same(work(), ref) else 3)
    print(*results)
    """
    r = run_python(code, isa)
    assert_ok(r)
    assert r.stdout.split() == ["0"] * 4
    assert r.stderr.count("could not start worker threads") == 1, r.stderr
    assert "of the 4 threads" in r.stderr


# ----------------------------------------------------------------------------- settings

CPUS = min(os.cpu_count() or 1, 1024)
SHOW = "print(lo.get_num_threads(), same(work(), ref))\n"


@pytest.mark.parametrize("value", ["1e3", "2abc", "0", "-2", "+2", "0x10", "3.0", "abc", "2 3"])
def test_env_num_threads_rejects(isa, value):
    r = run_python(SHOW, isa, LOGITOPS_NUM_THREADS=value)
    assert_ok(r)
    assert r.stdout.split() == [str(CPUS), "True"]
    assert r.stderr.count("LOGITOPS_NUM_THREADS") == 1, r.stderr
    assert f"'{value}'" in r.stderr and "not a positive integer" in r.stderr


@pytest.mark.parametrize("value,expected", [
    ("3", 3), (" 3\t", 3), ("0003", 3), ("1024", 1024), ("2000", 1024), ("4294967297", 1024),
    ("99999999999999999999999", 1024), ("", CPUS), ("  ", CPUS),
])
def test_env_num_threads_accepts(isa, value, expected):
    code = "import logitops as lo; print(lo.get_num_threads())\n"  # no pooled call: 1024 threads would be slow to start
    r = run_python(code, isa, preamble=False, LOGITOPS_NUM_THREADS=value)
    assert_ok(r)
    assert r.stdout.split() == [str(expected)]
    assert r.stderr == ""


def test_thread_cap_is_in_the_core(isa):
    code = """
    import logitops as lo
    from logitops import _core
    seen = []
    for n in (5000, 10**30, 1024, 1):
        lo.set_num_threads(n)
        seen.append(lo.get_num_threads())
    for n in (5000, 0, -7):  # the core's own clamp, without the Python checks
        _core.set_num_threads(n)
        seen.append(lo.get_num_threads())
    print(*seen)
    """
    r = run_python(code, isa, preamble=False)
    assert_ok(r)
    assert r.stdout.split() == ["1024", "1024", "1024", "1", "1024", "1", "1"]
