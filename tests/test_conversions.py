"""The float16 / bfloat16 conversion kernels (SPEC "Low precision"), bit for bit: every 16-bit
pattern widened, float32 patterns (random, near every rounding midpoint, specials) rounded to
nearest even as NumPy / ml_dtypes do, NaN kept NaN, and the same bits on every ISA. (No torch
here, so .ci/aarch64 runs it under emulation; .ci/aarch64_reference.py compares these patterns'
bits across machines.)
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import LOW_DTYPES, dtype_id
from _tolerances import F32

from logitops import _core

ALL_16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)


def _float32_patterns() -> np.ndarray:
    """Random float32 bit patterns, every float16 / bfloat16 rounding midpoint of a sample of
    values and its neighbours, and the specials."""
    rng = np.random.default_rng(7)
    rand = rng.integers(0, 1 << 32, 400_000, dtype=np.uint64).astype(np.uint32)
    # float16 keeps 10 of float32's 23 mantissa bits: a midpoint has bit 12 set and bits 0..11 clear
    mid16 = (rng.integers(0, 1 << 19, 100_000, dtype=np.uint64).astype(np.uint32) << np.uint32(13)) | np.uint32(0x1000)
    mid_bf = (rng.integers(0, 1 << 16, 100_000, dtype=np.uint64).astype(np.uint32) << np.uint32(16)) | np.uint32(0x8000)
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFFFFFFF, 0x7F7FFFFF,
                        0x477FEFFF, 0x477FF000, 0x477FF001, 0x33000000, 0x33000001, 0x38800000, 0x387FFFFF,
                        0x00000001, 0x00800000], dtype=np.uint32)
    mids = np.concatenate([mid16, mid_bf])
    return np.concatenate([rand, mids, mids - np.uint32(1), mids + np.uint32(1), special]).view(np.float32)


PATTERNS = _float32_patterns()


@pytest.mark.parametrize("dt", LOW_DTYPES, ids=dtype_id)
def test_widening_is_exact_for_every_pattern(dt):
    got = _core._widen(ALL_16.view(dt))
    want = ALL_16.view(dt).astype(np.float32)
    nan = np.isnan(want)
    assert got.dtype == F32
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
    assert np.isnan(got[nan]).all()
    assert (np.signbit(got[nan]) == np.signbit(want[nan])).all()


@pytest.mark.parametrize("dt", LOW_DTYPES, ids=dtype_id)
def test_narrowing_rounds_to_nearest_even(dt):
    got = _core._narrow(PATTERNS, np.zeros(1, dt))
    assert got.dtype == dt
    with np.errstate(all="ignore"):
        want = PATTERNS.astype(dt)  # NumPy's float16 and ml_dtypes' bfloat16: round to nearest even
    nan = np.isnan(PATTERNS)
    np.testing.assert_array_equal(got[~nan].view(np.uint16), want[~nan].view(np.uint16))
    back = got[nan].astype(np.float32)
    assert np.isnan(back).all(), "a NaN must stay a NaN (a truncated payload would give inf)"
    assert (np.signbit(back) == np.signbit(PATTERNS[nan])).all()


def test_every_isa_converts_to_the_same_bits():
    before = _core.isa()
    results = {}
    try:
        for isa in _core.available_isas():
            _core._set_isa(isa)
            results[isa] = [(_core._widen(ALL_16.view(dt)).view(np.uint32).copy(),
                             _core._narrow(PATTERNS, np.zeros(1, dt)).view(np.uint16).copy()) for dt in LOW_DTYPES]
    finally:
        _core._set_isa(before)
    ref = results["scalar"]
    assert len(results) >= 1
    for isa, res in results.items():
        for (w, n), (rw, rn) in zip(res, ref):
            np.testing.assert_array_equal(w, rw, err_msg=f"{isa} widens differently from scalar")
            np.testing.assert_array_equal(n, rn, err_msg=f"{isa} rounds differently from scalar")
