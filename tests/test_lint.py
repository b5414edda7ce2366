"""The tree passes its own linters (configured in pyproject.toml and .clang-format), as
pre-commit runs them: ruff over the Python, clang-format over cpp/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["-"], autouse=True)
def isa():  # linting does not depend on the instruction set: run once
    yield


def _tool(name: str) -> str:
    # The interpreter's own bin/ first: a venv's tools are there even when it is not activated.
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (it comes with the [test] extra)")
    return path


def test_ruff_clean():
    r = subprocess.run([_tool("ruff"), "check", "--no-cache", str(ROOT)], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_clang_format_clean():
    sources = sorted(str(p) for p in (ROOT / "cpp").rglob("*") if p.suffix in (".h", ".cpp"))
    assert sources
    r = subprocess.run([_tool("clang-format"), "--dry-run", "--Werror", *sources], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-4000:]
