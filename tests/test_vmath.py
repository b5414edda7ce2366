"""The vector math contract of cpp/simd/vmath.h (vexp, vlog1p, vlog, vsoftplus, vtanh and
vtanh_sech2's two results, "tanh_pair" and "sech2"), per ISA,
through the probe `logitops._testing.vmath(fn, x, isa)` (a test-only module: built by dev.sh,
or any build with the CMake option LOGITOPS_TESTING=ON; pip builds leave it out):

- float32 over a dense sample of the whole float range (random bit patterns and uniform
  ranges, millions of points) against float64 NumPy, which is exact to far below a float32 ulp;
- float64 against x87 long double on a million points and against mpmath on a few thousand;
- special values, signed zeros, subnormals and the overflow / underflow thresholds exactly.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from _helpers import DTYPES, F32, F64, LONGDOUBLE_IS_EXTENDED, dtype_id, ulp_error, worst
from _tolerances import VMATH_ULP as BOUND  # max ulp error per (function, ISA)

_testing = pytest.importorskip(
    "logitops._testing", reason="logitops._testing not built (CMake option LOGITOPS_TESTING=ON; dev.sh sets it)")

FUNCS = ("exp", "log1p", "log", "softplus", "tanh", "tanh_pair", "sech2")
INF, NAN = np.inf, np.nan


def bound(fn: str, isa: str) -> float:
    """VMATH_ULP's bound; an ISA without rows of its own is held to avx2's (a vector ISA with
    fused multiply-add), so adding an ISA needs no entry there."""
    return BOUND.get((fn, isa), BOUND[fn, "avx2"])


def vm(fn: str, x: np.ndarray, isa: str) -> np.ndarray:
    before = x.copy()
    y = _testing.vmath(fn, x, isa)
    assert y.dtype == x.dtype and y.shape == x.shape
    np.testing.assert_array_equal(x, before)
    return y


def reference(fn: str, x: np.ndarray, work) -> np.ndarray:
    """fn(x) in `work` precision (float64 for float32 inputs, long double for float64)."""
    with np.errstate(all="ignore"):  # signalling NaNs among the random bit patterns
        w = x.astype(work)
        if fn == "exp":
            return np.exp(w)
        if fn == "log1p":
            return np.log1p(w)
        if fn == "log":
            return np.log(w)
        if fn in ("tanh", "tanh_pair"):
            return np.tanh(w)
        if fn == "sech2":
            return 1 / np.cosh(w) ** 2  # cosh overflows where sech^2 is far below the smallest normal
        return np.maximum(w, 0) + np.log1p(np.exp(-np.abs(w)))  # softplus, no overflow


def mp_reference(fn: str, x: float):
    v = mpmath.mpf(float(x))
    if mpmath.isnan(v):
        return mpmath.mpf("nan")
    if fn == "exp":
        return mpmath.exp(v)
    if fn == "log1p":
        return mpmath.log1p(v) if v > -1 else (mpmath.mpf("-inf") if v == -1 else mpmath.mpf("nan"))
    if fn == "log":
        return mpmath.log(v) if v > 0 else (mpmath.mpf("-inf") if v == 0 else mpmath.mpf("nan"))
    if fn in ("tanh", "tanh_pair"):
        return mpmath.tanh(v)
    if fn == "sech2":
        return mpmath.sech(v) ** 2
    return mpmath.log1p(mpmath.exp(v))


def sample(dtype, fn: str, n_bits: int, n_range: int, seed: int = 7) -> np.ndarray:
    """Random bit patterns (every exponent, subnormals, infinities and NaNs included) plus
    uniform draws over the interesting range of `fn`."""
    rng = np.random.default_rng(seed)
    ut = np.uint32 if dtype == F32 else np.uint64
    bits = rng.integers(0, np.iinfo(ut).max, n_bits, dtype=ut, endpoint=True).view(dtype)
    ranges = {
        "exp": [(-110, 90), (-1, 1), (-750, 710)],
        "log1p": [(-1, 1), (-1e-3, 1e-3), (0, 1e6)],
        "log": [(0.5, 2), (0, 1e-30), (0, 1e30)],
        "softplus": [(-110, 90), (-40, 40), (-750, 750)],
        "tanh": [(-20, 20), (-1, 1), (-1e-3, 1e-3)],
        "tanh_pair": [(-20, 20), (-1, 1), (-1e-3, 1e-3)],
        "sech2": [(-20, 20), (-1, 1), (-400, 400)],
    }[fn]
    parts = [bits]
    for a, b in ranges:
        parts.append(rng.uniform(a, b, n_range).astype(dtype))
    if fn in ("log", "log1p"):
        parts.append(np.abs(bits))  # the positive half again: where the ulps are
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def f32_samples():
    """Inputs and float64 references, computed once for both ISAs."""
    out = {}
    for fn in FUNCS:
        x = sample(F32, fn, 2_000_000, 300_000)
        out[fn] = (x, reference(fn, x, np.float64))
    return out


@pytest.mark.parametrize("fn", FUNCS)
def test_float32_whole_range_against_float64(fn, isa, f32_samples):
    x, exact = f32_samples[fn]
    y = vm(fn, x, isa)
    err = ulp_error(y, exact)
    assert err.max() <= bound(fn, isa), worst(y, exact, x)


@pytest.mark.skipif(not LONGDOUBLE_IS_EXTENDED, reason="needs x87 long double as the reference")
@pytest.mark.parametrize("fn", FUNCS)
def test_float64_against_long_double(fn, isa):
    x = sample(F64, fn, 400_000, 100_000, seed=11)
    y = vm(fn, x, isa)
    exact = reference(fn, x, np.longdouble)
    err = ulp_error(y, exact)
    assert err.max() <= bound(fn, isa), worst(y, exact, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("fn", FUNCS)
def test_against_mpmath(fn, dtype, isa):
    """A few thousand points against 100-bit mpmath, for both dtypes."""
    x = sample(np.dtype(dtype), fn, 1000, 300, seed=3)
    y = vm(fn, x, isa)
    with mpmath.workprec(100):
        exact = [mp_reference(fn, v) for v in x]
    err = ulp_error(y, np.array(exact, dtype=object))
    assert err.max() <= bound(fn, isa), worst(y, np.array([float(e) for e in exact]), x)


# ----------------------------------------------------------------------------- special values


def special_cases(fn: str, dtype):
    """(input, expected output) pairs that must hold exactly (signed zeros included)."""
    fi = np.finfo(dtype)
    tiny_sub = float(fi.smallest_subnormal)
    tiny = float(fi.smallest_normal)
    common = [(NAN, NAN), (-NAN, NAN)]
    if fn == "exp":
        return common + [(0.0, 1.0), (-0.0, 1.0), (INF, INF), (-INF, 0.0), (1e30, INF), (-1e30, 0.0),
                         (float(fi.max), INF), (-float(fi.max), 0.0), (tiny_sub, 1.0), (-tiny_sub, 1.0),
                         (1e-30 if dtype == F64 else 1e-10, 1.0)]
    if fn == "log1p":
        return common + [(0.0, 0.0), (-0.0, -0.0), (-1.0, -INF), (-1.5, NAN), (-INF, NAN), (INF, INF),
                         (tiny_sub, tiny_sub), (-tiny_sub, -tiny_sub), (tiny, tiny), (-tiny, -tiny),
                         (1e-30, 1e-30), (-1e-30, -1e-30), (-float(fi.max), NAN)]
    if fn == "log":
        return common + [(0.0, -INF), (-0.0, -INF), (1.0, 0.0), (-1.0, NAN), (-tiny_sub, NAN), (INF, INF),
                         (-INF, NAN), (2.0, float(np.log(np.float64(2.0)).astype(dtype)))]
    if fn in ("tanh", "tanh_pair"):
        return common + [(0.0, 0.0), (-0.0, -0.0), (INF, 1.0), (-INF, -1.0), (1e30, 1.0), (-1e30, -1.0),
                         (float(fi.max), 1.0), (tiny_sub, tiny_sub), (-tiny_sub, -tiny_sub), (tiny, tiny),
                         (-tiny, -tiny), (60.0, 1.0), (-60.0, -1.0)]
    if fn == "sech2":
        return common + [(0.0, 1.0), (-0.0, 1.0), (INF, 0.0), (-INF, 0.0), (1e30, 0.0), (-1e30, 0.0),
                         (tiny_sub, 1.0), (-tiny_sub, 1.0)]
    return common + [(INF, INF), (-INF, 0.0), (1e30, 1e30), (-1e30, 0.0), (float(fi.max), float(fi.max))]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("fn", FUNCS)
def test_special_values(fn, dtype, isa):
    dtype = np.dtype(dtype)
    cases = special_cases(fn, dtype)
    x = np.array([c[0] for c in cases], dtype)
    want = np.array([c[1] for c in cases], dtype)
    # Each case in every lane of a vector, and in a masked tail.
    for pad in (0, 1, 3, 5, 8):
        xp = np.concatenate([np.ones(pad, dtype), x])
        y = vm(fn, xp, isa)[pad:]
        for xi, yi, wi in zip(x, y, want):
            if np.isnan(wi):
                assert np.isnan(yi), f"{fn}({xi!r}) = {yi!r}, expected nan"
            else:
                assert yi == wi and np.signbit(yi) == np.signbit(wi), f"{fn}({xi!r}) = {yi!r}, expected {wi!r}"


def test_exp_of_zero_is_exactly_one(isa):
    for dt in DTYPES:
        assert (vm("exp", np.zeros(37, dt), isa) == 1).all()
        assert (vm("exp", -np.zeros(37, dt), isa) == 1).all()


# Overflow: the largest x with a finite exp; underflow: where exp(x) drops below half the
# smallest subnormal and must round to 0.
THRESHOLDS = {
    F32: dict(overflow=np.float32(88.72283), underflow=np.float32(-103.97208)),
    F64: dict(overflow=np.float64(709.782712893384), underflow=np.float64(-745.1332191019412)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_exp_overflow_threshold(dtype, isa):
    dtype = np.dtype(dtype)
    t = THRESHOLDS[dtype]["overflow"]
    steps = 64
    x = np.array([t], dtype)
    xs = [x]
    for _ in range(steps):  # ulp steps either side of the threshold
        xs.insert(0, np.nextafter(xs[0], dtype.type(-INF)))
        xs.append(np.nextafter(xs[-1], dtype.type(INF)))
    x = np.concatenate(xs)
    y = vm("exp", x, isa)
    exact = reference("exp", x, np.float64 if dtype == F32 else np.longdouble)
    with np.errstate(over="ignore"):
        finite = np.isfinite(exact.astype(dtype))
    assert finite.any() and (~finite).any()  # the sample straddles the threshold
    np.testing.assert_array_equal(np.isfinite(y), finite)
    assert ulp_error(y, exact).max() <= bound("exp", isa)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("fn", ["exp", "softplus"])
def test_subnormal_results(fn, dtype, isa):
    """Below the normal range exp rounds once: within one subnormal spacing of the exact value,
    and 0 below half the smallest subnormal. softplus(z) = log1p(exp(z)) is exp(z) to rounding
    there, and keeps the subnormal too."""
    dtype = np.dtype(dtype)
    fi = np.finfo(dtype)
    t = float(THRESHOLDS[dtype]["underflow"])
    lo_normal = float(np.log(np.float64(fi.smallest_normal)))
    x = np.linspace(t - 2.0, lo_normal, 200_001).astype(dtype)
    y = vm(fn, x, isa)
    work = np.float64 if dtype == F32 else np.longdouble
    exact = reference(fn, x, work)
    diff = np.abs(y.astype(work) - exact)
    i = int(np.argmax(diff))
    assert diff[i] <= work(fi.smallest_subnormal), f"{fn}({x[i]!r}) = {y[i]!r}, exact {exact[i]!r}"
    assert (y[exact < work(fi.smallest_subnormal) / 2 * 0.999] == 0).all()
    assert ((y > 0) & (y < fi.smallest_normal)).sum() > 1000  # subnormals really produced


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_log_of_subnormals(dtype, isa):
    dtype = np.dtype(dtype)
    fi = np.finfo(dtype)
    ut = np.uint32 if dtype == F32 else np.uint64
    rng = np.random.default_rng(5)
    mant = rng.integers(1, 1 << (fi.nmant), 50_000, dtype=np.uint64).astype(ut)
    x = np.concatenate([mant.view(dtype), np.array([fi.smallest_subnormal, fi.smallest_normal], dtype)])
    y = vm("log", x, isa)
    exact = reference("log", x, np.float64 if dtype == F32 else np.longdouble)
    assert ulp_error(y, exact).max() <= bound("log", isa), worst(y, exact, x)
    # log1p of a subnormal is the subnormal itself.
    np.testing.assert_array_equal(vm("log1p", x[:-1], isa), x[:-1])


def test_probe_rejects_unknowns(isa):
    with pytest.raises(ValueError, match="fn"):
        _testing.vmath("sin", np.ones(3), isa)
    with pytest.raises(ValueError, match="isa"):
        _testing.vmath("exp", np.ones(3), "avx512_bogus")
    with pytest.raises(TypeError):
        _testing.vmath("exp", np.ones(3, np.int32), isa)


def test_probe_is_not_in_the_product():
    from logitops import _core

    assert not [name for name in dir(_core) if "vmath" in name]
