"""Every test runs once per instruction set this machine can execute (ids [scalar], [avx2]),
so the portable path is as tested as the fast one."""

from __future__ import annotations

import numpy as np
import pytest

import logitops as lo
from logitops import _core

ISAS = list(_core.available_isas())


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
    """`slow` tests run only when asked for (`-m slow`): the README's and CI's plain `pytest`
    would otherwise hold ~10 GB for minutes in tests/test_scale_2e31.py."""
    expr = config.option.markexpr or ""
    if "slow" in expr.replace("not slow", ""):
        return
    skip = pytest.mark.skip(reason="slow: run by hand with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
