"""The package's annotations hold: mypy over python/logitops (the source tree, when present)."""

from __future__ import annotations

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
    r = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--no-incremental", str(SRC)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
