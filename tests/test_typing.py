"""The package's annotations hold: mypy over python/logitops (the source tree, when present)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "python" / "logitops"


@pytest.fixture(params=["-"], autouse=True)
def isa():  # type checking does not depend on the instruction set: run once
    yield


def test_mypy_clean():
    pytest.importorskip("mypy")
    if not SRC.is_dir():
        pytest.skip("source tree not present")
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports", "--no-incremental", str(SRC)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_core_stub_matches_extension(tmp_path):
    """python/logitops/_core.pyi names what the compiled _core has, and its enums' members and values
    (pybind11 functions carry no inspectable signature: their parameters are not compared)."""
    pytest.importorskip("mypy")
    import logitops

    pkg_root = Path(logitops.__file__).absolute().parent.parent  # not resolve(): dev builds symlink the sources
    # An installed package is found by mypy on its own (and site-packages may not be in MYPYPATH);
    # a dev build (PYTHONPATH=build/NAME/pkg) must be named.
    installed = "site-packages" in pkg_root.parts or "dist-packages" in pkg_root.parts
    paths = {} if installed else {"MYPYPATH": str(pkg_root), "PYTHONPATH": str(pkg_root)}
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", "logitops._core", "--allowlist",
                        str(Path(__file__).with_name("stubtest_allowlist.txt"))],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,  # no stray modules
                       env={**os.environ, **paths})
    assert r.returncode == 0, r.stdout + r.stderr
