"""Every test runs once per instruction set this machine can execute (ids [scalar], [avx2]),
so the portable path is as tested as the fast one."""

from __future__ import annotations

import os

import numpy as np
import pytest

import logitops as lo
from logitops import _core


def _isas_to_test() -> list[str]:
    """Every ISA this machine runs, or those of them LOGITOPS_TEST_ISAS names (comma-separated,
    `best` for the default one): CI's second run of the suite, against the installed wheel and the
    oldest NumPy, tests the package there, not each kernel path again."""
    available = list(_core.available_isas())
    wanted = os.environ.get("LOGITOPS_TEST_ISAS", "").strip()
    if not wanted:
        return available
    names = [available[-1] if w.strip() == "best" else w.strip() for w in wanted.split(",")]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise pytest.UsageError(f"LOGITOPS_TEST_ISAS: {unknown} not among this machine's ISAs {available}")
    return names


ISAS = _isas_to_test()


@pytest.fixture(params=ISAS, autouse=True)
def isa(request):
    before = _core.isa()
    _core._set_isa(request.param)
    yield request.param
    _core._set_isa(before)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_report_header(config):
    return f"logitops from {lo.__file__}; ISAs tested: {', '.join(ISAS)}; default threads {lo.get_num_threads()}"


def pytest_collection_modifyitems(config, items):
    """`one_isa` tests run on the default ISA only (deselected on the others). `slow` tests run
    only when asked for (`-m slow`): the README's and CI's plain `pytest` would otherwise hold
    ~10 GB for minutes in tests/test_scale_2e31.py."""
    best = _core.available_isas()[-1]
    keep, drop = [], []
    for item in items:
        cs = getattr(item, "callspec", None)
        other = cs is not None and cs.params.get("isa", best) != best
        (drop if other and item.get_closest_marker("one_isa") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    expr = config.option.markexpr or ""
    if "slow" in expr.replace("not slow", ""):
        return
    skip = pytest.mark.skip(reason="slow: run by hand with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
