"""One build serves every x86-64 CPU: the instructions of an ISA's kernels stay in that ISA's
code, so a CPU without it runs the scalar path and never meets an illegal instruction
(SIGILL).

The compiled objects of a build (build/<name>/CMakeFiles/*.dir, the objects _core.so was linked
from; the extension itself is stripped) are disassembled: every function that uses an
instruction beyond baseline x86-64 (any VEX/EVEX-encoded one: v-prefixed mnemonics, and the
BMI/LZCNT/POPCNT/MOVBE extras) must be in the namespace logitops::<isa> of the ISA its object was
compiled for (cpp/isa_list.h's LO_TARGET), zmm and mask registers in an avx512 ISA only; every
object compiled without ISA flags (bindings, the dispatcher and its CPU probe, the thread pool)
has none. An inline function emitted by an ISA's object outside its namespace would be merged
by the linker with the baseline objects' copy, and whichever copy wins serves both: that is
the SIGILL this test exists to prevent. The checker itself is tested on an object made to break
the rule.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import logitops

if platform.machine().lower() not in ("x86_64", "amd64"):
    # (an aarch64 build has no ISA flags to leak: its neon objects are baseline AArch64)
    pytest.skip("disassembles x86-64 objects: x86-64 builds only", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
ISA_DIR = re.compile(r"^logitops_(?:testing_)?kernels_([a-z0-9_]+)\.dir$")
FUNC = re.compile(r"^[0-9a-f]+ <(.+)>:$")
# Beyond baseline x86-64: VEX/EVEX (objdump's mnemonics start with v), and the extensions GCC may
# emit without VEX under ISA flags. (tzcnt is not listed: GCC emits it as `rep bsf` for any CPU.)
EXTRA = {"andn", "bextr", "blsi", "blsmsk", "blsr", "bzhi", "lzcnt", "movbe", "mulx", "pdep", "pext",
         "popcnt", "rorx", "sarx", "shlx", "shrx"}
AVX512_REGS = re.compile(r"%zmm|%k[0-7]\b|\{%k")


@pytest.fixture(params=["-"], autouse=True)
def isa():  # the objects do not depend on the ISA chosen at run time: run once
    yield


def _objdump() -> str:
    tool = shutil.which("objdump")
    if tool is None:
        pytest.skip("objdump (binutils) not installed")
    return tool


def functions(obj: Path) -> dict[str, list[str]]:
    """{mangled function name: its instruction lines} of an object file."""
    out = subprocess.run([_objdump(), "-d", "--no-show-raw-insn", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    funcs: dict[str, list[str]] = {}
    cur: list[str] | None = None
    for line in out.splitlines():
        m = FUNC.match(line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
        elif cur is not None and "\t" in line and line.lstrip()[:1].isalnum():
            cur.append(line.split("\t", 1)[1].strip())
    return funcs


def _beyond_baseline(insn: str) -> bool:
    mnemonic = insn.split()[0] if insn.split() else ""
    if mnemonic in ("rep", "repz", "repnz", "lock", "notrack", "bnd") and len(insn.split()) > 1:
        mnemonic = insn.split()[1]
    return mnemonic.startswith("v") or mnemonic in EXTRA


def in_namespace(mangled: str, isa: str) -> bool:
    """The mangled name is of an entity in namespace logitops::<isa> (a function, a const member
    function (K), an entity local to one (Z), a compiler clone such as .cold)."""
    return re.match(rf"_ZZ?N[KVRO]*8logitops{len(isa)}{isa}", mangled) is not None


def violations(obj: Path, isa: str | None) -> list[str]:
    """What breaks the rule in `obj`, compiled for `isa` (None: without ISA flags)."""
    bad = []
    for name, insns in functions(obj).items():
        special = [i for i in insns if _beyond_baseline(i)]
        if not special:
            continue
        where = f"{obj.name}: {name} uses {special[0]!r}"
        if isa is None or isa == "scalar":
            bad.append(f"{where}, but the object was compiled for baseline x86-64")
        elif not in_namespace(name, isa):
            bad.append(f"{where} outside namespace logitops::{isa} (the linker may give it to every CPU)")
        elif not isa.startswith("avx512") and any(AVX512_REGS.search(i) for i in insns):
            bad.append(f"{where}: AVX-512 registers in the {isa} code")
    return bad


def build_dirs() -> list[Path]:
    """Build directories whose objects are at hand: the one the imported extension comes from (a
    dev build links it there) and every build under the source tree (pip's build/<wheel tag>)."""
    dirs = {Path(logitops._core.__file__).resolve().parent}
    dirs.update(p.parent for p in (ROOT / "build").glob("*/CMakeFiles"))
    return sorted(d for d in dirs if any((d / "CMakeFiles").glob("logitops_kernels_*.dir")) and not _sanitized(d))


def _sanitized(d: Path) -> bool:
    """A sanitizer build (its instrumentation is not the product's code): left out."""
    cache = d / "CMakeCache.txt"
    return cache.is_file() and "LOGITOPS_SANITIZE:BOOL=ON" in cache.read_text(errors="replace")


def test_isa_code_stays_in_its_namespace():
    dirs = build_dirs()
    if not dirs:
        pytest.skip("no build directory with the compiled objects (an installed wheel without its build tree)")
    for d in dirs:
        checked: dict[str | None, int] = {}
        bad: list[str] = []
        for target in (d / "CMakeFiles").glob("*.dir"):
            m = ISA_DIR.match(target.name)
            isa = m.group(1) if m else None
            for obj in target.rglob("*.o"):
                bad += violations(obj, isa)
                checked[isa] = checked.get(isa, 0) + 1
        assert not bad, f"{d}:\n" + "\n".join(bad)
        # Something was checked: the scalar kernels, the objects without ISA flags, and every other
        # ISA the build compiled (their objects exist when their directories do).
        assert checked.get("scalar") and checked.get(None), (d, checked)
        isas = {ISA_DIR.match(t.name).group(1) for t in (d / "CMakeFiles").glob("logitops_kernels_*.dir")}
        assert all(checked.get(i) for i in isas), (d, checked)
        # An ISA's objects do use their instructions (else the rule holds for want of them).
        for i in isas - {"scalar"}:
            objs = list((d / "CMakeFiles" / f"logitops_kernels_{i}.dir").rglob("*.o"))
            assert any(_beyond_baseline(x) for o in objs for f in functions(o).values() for x in f), (d, i)


BAD_TU = r"""
// An inline helper outside the ISA namespace, emitted by an AVX2 object: the rule's violation.
__attribute__((noinline)) inline float helper(float a, float b) { return a * b + 1.5f; }
namespace logitops { namespace avx2 {
float kernel(float a, float b) { return helper(a, b) * a; }
}}
float baseline_entry(float a) { return a / 3.0f; }
"""


def test_checker_catches_a_leak(tmp_path):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to make the bad object")
    src = tmp_path / "bad.cpp"
    src.write_text(BAD_TU)
    obj = tmp_path / "bad.o"
    subprocess.run([cxx, "-O2", "-mavx2", "-mfma", "-c", str(src), "-o", str(obj)], check=True)
    bad = violations(obj, "avx2")
    assert any("helper" in b and "outside namespace logitops::avx2" in b for b in bad), bad
    assert any("baseline_entry" in b for b in bad), bad
    assert not any("logitops::avx2::kernel" in b for b in bad), bad
    assert any("baseline x86-64" in b for b in violations(obj, None)), "VEX code in a baseline object must be caught"
    plain = tmp_path / "plain.o"
    subprocess.run([cxx, "-O2", "-c", str(src), "-o", str(plain)], check=True)
    assert violations(plain, None) == []
