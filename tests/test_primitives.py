"""The primitives (logsumexp, log_softmax, softmax, log_sigmoid, sigmoid) and their backward
functions against torch: forward against torch's functions, backward against torch autograd
with a random upstream gradient, over dtypes x axes x shapes x memory layouts x extreme values.
Every test runs once per ISA (conftest)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import DTYPES, assert_close, dtype_id
from _oracle import to_numpy, to_torch, torch_primitive, torch_vjp

import logitops as lo
from logitops._checks import AxisError, normalize_axes

ROW_FUNCS = ("logsumexp", "log_softmax", "softmax")
ELEM_FUNCS = ("log_sigmoid", "sigmoid")
INF = np.inf


# ----------------------------------------------------------------------------- calls


def lo_forward(name, x, axis=-1, keepdims=False):
    if name == "logsumexp":
        return lo.logsumexp(x, axis=axis, keepdims=keepdims)
    if name in ROW_FUNCS:
        return getattr(lo, name)(x, axis=axis)
    return getattr(lo, name)(x)


def lo_backward(name, g, x, axis=-1, keepdims=False):
    if name == "logsumexp":
        return lo.logsumexp_backward(g, x, axis=axis, keepdims=keepdims)
    if name in ROW_FUNCS:
        return getattr(lo, name + "_backward")(g, x, axis=axis)
    return getattr(lo, name + "_backward")(g, x)


def check_against_torch(name, x, axis=-1, keepdims=False, rng=None, grad=None, rtol=None, atol=None):
    """Forward and backward of lo.<name> on x against torch; x must be left unchanged."""
    rng = rng or np.random.default_rng(0)
    before = x.copy()
    fn = torch_primitive(name, x.ndim, axis, keepdims)
    # The oracle is torch in float64 on the same values, rounded to x's dtype: torch's own
    # float32 results can be off by far more than the tolerance (logsumexp_backward at 1e4
    # rounds lse first; log_softmax at a confident row's maximum cancels).
    x64 = x.astype(np.float64)
    expected = to_numpy(fn(to_torch(x64))).astype(x.dtype)
    got = lo_forward(name, x, axis, keepdims)
    assert_close(got, expected, x.dtype, rtol=rtol, atol=atol, what=f"{name} forward")

    g = grad if grad is not None else rng.standard_normal(expected.shape).astype(x.dtype)
    expected_grad = torch_vjp(fn, x64, g.astype(np.float64)).astype(x.dtype)
    got_grad = lo_backward(name, g, x, axis, keepdims)
    assert_close(got_grad, expected_grad, x.dtype, rtol=rtol, atol=atol, what=f"{name} backward")
    assert got_grad.shape == x.shape

    np.testing.assert_array_equal(x, before, err_msg="input modified")
    return got, got_grad


def randn(rng, shape, dtype, scale=3.0):
    return np.asarray(rng.standard_normal(shape) * scale).astype(dtype)


# ----------------------------------------------------------------------------- shapes and axes

ROW_CASES = [
    # (shape, axis)
    ((4, 1), -1),
    ((5, 7), -1),
    ((3, 8), -1),
    ((3, 9), 1),
    ((6, 33), -1),
    ((5, 1000), -1),
    ((2, 50257), -1),
    ((17, 3), 0),
    ((7,), -1),
    ((7,), 0),
    ((7,), None),
    ((3, 4, 5), -1),
    ((3, 4, 5), 0),
    ((3, 4, 5), 1),
    ((3, 4, 5), (0, 2)),
    ((3, 4, 5), (2, 0)),
    ((3, 4, 5), (1, 2)),
    ((3, 4, 5), [0, 1]),
    ((3, 4, 5), None),
    ((2, 3, 4, 5), (1, 3)),
    ((), None),
    ((), 0),
    ((), -1),
    ((0, 5), -1),
    ((5, 0), -1),
    ((0, 0), -1),
    ((3, 0, 4), 1),
    ((3, 0, 4), -1),
    ((2, 3, 0), (0, 1)),
]


def case_id(case):
    shape, axis = case
    return f"{'x'.join(map(str, shape)) or 'scalar'}-ax{axis}".replace(" ", "")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", ROW_CASES, ids=case_id)
@pytest.mark.parametrize("name", ROW_FUNCS)
def test_row_functions_match_torch(name, case, dtype, rng):
    shape, axis = case
    x = randn(rng, shape, dtype)
    check_against_torch(name, x, axis, rng=rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", [((5, 9), -1), ((3, 4, 5), (0, 2)), ((3, 4, 5), None), ((), None),
                                  ((0, 4), -1), ((4, 0), 1)], ids=case_id)
def test_logsumexp_keepdims(case, dtype, rng):
    shape, axis = case
    x = randn(rng, shape, dtype)
    got, _ = check_against_torch("logsumexp", x, axis, keepdims=True, rng=rng)
    axes = normalize_axes(x.ndim, axis)
    assert got.shape == tuple(1 if i in axes else n for i, n in enumerate(shape))


ELEM_SHAPES = [(1,), (7,), (8,), (9,), (33,), (1000,), (3, 4, 5), (), (0,), (4, 0), (70001,)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name", ROW_FUNCS + ELEM_FUNCS)
def test_ordinary_data_matches_torch_in_same_dtype(name, dtype, rng):
    """On ordinary data, torch run in x's own dtype agrees with us within the tolerance."""
    x = randn(rng, (9, 300), dtype)
    fn = torch_primitive(name, 2)
    assert_close(lo_forward(name, x), to_numpy(fn(to_torch(x))), dtype)
    g = randn(rng, np.shape(lo_forward(name, x)), dtype)
    assert_close(lo_backward(name, g, x), torch_vjp(fn, x, g), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", ELEM_SHAPES, ids=lambda s: "x".join(map(str, s)) or "scalar")
@pytest.mark.parametrize("name", ELEM_FUNCS)
def test_elementwise_match_torch(name, shape, dtype, rng):
    x = randn(rng, shape, dtype, scale=10.0)
    got, _ = check_against_torch(name, x, rng=rng)
    assert got.shape == shape and got.dtype == dtype


# ----------------------------------------------------------------------------- memory layouts


def views(rng, dtype):
    """(id, non-contiguous / read-only views of random data, of shape about (6, 11))."""
    base = randn(rng, (12, 23), dtype)
    ro = base[:6, :11].copy()
    ro.flags.writeable = False
    yield "strided", base[::2, ::2]
    yield "negative", base[::-2, ::-1]
    yield "fortran", np.asfortranarray(base[:6, :11])
    yield "transposed", base[:11, :6].T
    yield "broadcast-rows", np.broadcast_to(base[0, :11], (6, 11))
    yield "broadcast-cols", np.broadcast_to(base[:6, :1], (6, 11))
    yield "readonly", ro


LAYOUTS = ["strided", "negative", "fortran", "transposed", "broadcast-rows", "broadcast-cols", "readonly"]


def layout_view(rng, dtype, which):
    return dict(views(rng, dtype))[which]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ROW_FUNCS + ELEM_FUNCS)
def test_layouts_match_torch(name, layout, dtype, rng):
    x = layout_view(rng, dtype, layout)
    for axis in (-1, 0, None) if name in ROW_FUNCS else (-1,):
        check_against_torch(name, x, axis, rng=rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name", ROW_FUNCS + ELEM_FUNCS)
def test_noncontiguous_grad_output(name, dtype, rng):
    x = randn(rng, (5, 13), dtype)
    out_shape = (5,) if name == "logsumexp" else (5, 13)
    g_base = randn(rng, tuple(2 * n for n in out_shape), dtype)
    g = g_base[tuple(slice(None, None, -2) for _ in out_shape)]
    g_ro = np.broadcast_to(g, g.shape)  # read-only too
    check_against_torch(name, x, -1, rng=rng, grad=g_ro)


# ----------------------------------------------------------------------------- extreme values


def extreme_rows(rng, dtype, cols):
    """Named 2-D arrays of adversarial finite / -inf / NaN rows of `cols` columns."""
    r = lambda lo_, hi: rng.uniform(lo_, hi, (4, cols)).astype(dtype)  # noqa: E731
    yield "pm1e4", r(-1e4, 1e4)
    yield "pm88", r(-88, 88)
    yield "in90to100", r(90, 100)
    yield "neg90to100", r(-100, -90)
    yield "big-1e4", np.full((3, cols), 1e4, dtype) + r(0, 1)[:3]
    confident = randn(rng, (4, cols), dtype, 1.0)
    confident[np.arange(4), rng.integers(0, cols, 4)] = np.array([20, 40, 80, 200], dtype)
    yield "confident", confident
    tiny = randn(rng, (4, cols), dtype, 1e-30)
    yield "tiny", tiny
    with_ninf = randn(rng, (4, cols), dtype)
    with_ninf[:, ::3] = -INF
    yield "some-ninf", with_ninf
    all_ninf = randn(rng, (4, cols), dtype)
    all_ninf[1:3] = -INF
    yield "rows-all-ninf", all_ninf
    with_nan = randn(rng, (4, cols), dtype)
    with_nan[1, cols // 2] = np.nan
    with_nan[3, :] = np.nan
    yield "nan", with_nan
    nan_and_ninf = np.full((2, cols), -INF, dtype)
    nan_and_ninf[0, -1] = np.nan
    yield "nan-with-ninf", nan_and_ninf
    ties = np.zeros((2, cols), dtype)
    yield "ties", ties


EXTREME_IDS = ["pm1e4", "pm88", "in90to100", "neg90to100", "big-1e4", "confident", "tiny", "some-ninf",
               "rows-all-ninf", "nan", "nan-with-ninf", "ties"]


@pytest.mark.parametrize("cols", [1, 7, 9, 33, 1000])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("which", EXTREME_IDS)
@pytest.mark.parametrize("name", ROW_FUNCS)
def test_row_extremes_match_torch(name, which, dtype, cols, rng):
    x = dict(extreme_rows(rng, dtype, cols))[which]
    check_against_torch(name, x, -1, rng=rng)
    # The same data along axis 0 (a strided reduction).
    check_against_torch(name, np.ascontiguousarray(x.T), 0, rng=rng)


def elementwise_extremes(dtype):
    fi = np.finfo(dtype)
    vals = [0.0, -0.0, 1e-30, -1e-30, float(fi.smallest_subnormal), -float(fi.smallest_subnormal),
            float(fi.smallest_normal), 1.0, -1.0, 5.0, -5.0, 15.0, -15.0, 16.6, 17.0, -17.0, 30.0, -30.0,
            36.7, 37.0, -37.0, 40.0, -40.0, 87.0, -87.0, 88.0, -88.0, 88.7, -88.7, 89.0, -89.0, 100.0,
            -100.0, 103.9, -103.9, 104.5, -104.5, 700.0, -700.0, 709.0, -709.0, 745.0, -745.0, 746.0, -746.0,
            1e4, -1e4, 1e30, -1e30, float(fi.max), -float(fi.max), INF, -INF, np.nan]
    # Each value in every lane position of a vector, next to ordinary values.
    x = np.array(vals, dtype)
    return np.concatenate([x, np.roll(x, 3)[:-1], np.linspace(-50, 50, 41).astype(dtype)])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name", ELEM_FUNCS)
def test_elementwise_extremes_match_torch(name, dtype, rng):
    x = elementwise_extremes(dtype)
    got, got_grad = check_against_torch(name, x, rng=rng)
    # torch is the oracle for signs of zeros too: log_sigmoid(+inf) = -0 or 0 is not pinned,
    # but every infinity and NaN position must agree (assert_close checks that).
    np.testing.assert_array_equal(np.isnan(got), np.isnan(x))
    np.testing.assert_array_equal(np.isnan(got_grad), np.isnan(x))


# ----------------------------------------------------------------------------- out=

OUT_FUNCS = ("log_softmax", "softmax", "log_sigmoid", "sigmoid")  # the forwards that take out=


def lo_forward_out(name, x, axis, out):
    if name in ROW_FUNCS:
        return getattr(lo, name)(x, axis=axis, out=out)
    return getattr(lo, name)(x, out=out)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name", OUT_FUNCS)
def test_out_receives_the_result(name, dtype, rng):
    """out= (a fresh buffer, or x itself) holds exactly the no-out result, is what the call returns,
    for every shape and layout, with the wide-range and +-inf data that take the kernels' side paths."""
    wide = randn(rng, (9, 37), dtype) * 40
    wide[0, 3] = INF
    wide[1, :] = -INF
    wide[2, ::3] = -INF
    cases = [(wide, -1), (wide, 0), (wide, None), (randn(rng, (4, 3, 5), dtype), 1),
             (randn(rng, (2, 1000), dtype), -1), (np.zeros((0, 4), dtype), -1), (np.zeros((3, 0), dtype), -1)]
    cases += [(layout_view(rng, dtype, which), -1) for which in LAYOUTS]
    if name in ELEM_FUNCS:
        cases += [(np.asarray(2.5, dtype=dtype), -1)]
    for x, axis in cases:
        if name in ELEM_FUNCS and axis != -1:
            continue
        want = lo_forward(name, x, axis)
        out = np.full(x.shape, np.nan, dtype)
        got = lo_forward_out(name, x, axis, out)
        assert got is out
        np.testing.assert_array_equal(out, want)
        if x.flags.c_contiguous and x.flags.writeable:
            x_in = x.copy()
            assert lo_forward_out(name, x_in, axis, x_in) is x_in
            np.testing.assert_array_equal(x_in, want)


@pytest.mark.parametrize("name", OUT_FUNCS)
def test_out_in_place_of_a_large_input(name, rng):
    """In place over many rows split across threads (and a chunk boundary), float32."""
    x = randn(rng, (300, 1031), np.float32) * 5
    want = lo_forward(name, x)
    before = lo.get_num_threads()
    lo.set_num_threads(2)
    try:
        y = x.copy()
        lo_forward_out(name, y, -1, y)
    finally:
        lo.set_num_threads(before)
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("name", OUT_FUNCS)
def test_bad_out_raises_naming_out(name, rng):
    x = randn(rng, (5, 7), np.float32)
    before = x.copy()
    ro = np.empty_like(x)
    ro.flags.writeable = False
    buf = np.zeros(40, np.float32)
    xa = buf[:35].reshape(5, 7)
    xa[...] = x
    bad = [(ValueError, x, np.empty((7, 5), np.float32)), (ValueError, x, np.empty(35, np.float32)),
           (TypeError, x, np.empty((5, 7), np.float64)), (TypeError, x, np.empty((5, 7), np.int32)),
           (TypeError, x, np.empty((5, 7), np.float32).tolist()), (ValueError, x, np.empty((5, 14), np.float32)[:, ::2]),
           (ValueError, x, np.asfortranarray(np.empty((5, 7), np.float32))), (ValueError, x, ro),
           (ValueError, xa, buf[1:36].reshape(5, 7))]
    for err, xin, out in bad:
        with pytest.raises(err, match=r"\bout\b"):
            lo_forward_out(name, xin, -1, out)
    np.testing.assert_array_equal(x, before)
    x_ro = x.copy()
    x_ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"\bout\b"):
        lo_forward_out(name, x_ro, -1, x_ro)
    with pytest.raises(TypeError):
        getattr(lo, name)(x, -1, np.empty_like(x)) if name in ROW_FUNCS else getattr(lo, name)(x, np.empty_like(x))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sigmoid_saturates_exactly(dtype):
    dtype = np.dtype(dtype).type
    x = np.array([-INF, -1e4, 1e4, INF, 0.0], dtype)
    s = lo.sigmoid(x)
    assert s[0] == 0 and s[3] == 1 and s[2] == 1 and s[4] == 0.5
    assert 0 <= s[1] < np.finfo(dtype).smallest_normal
    ls = lo.log_sigmoid(x)
    assert ls[0] == -INF and ls[1] == dtype(-1e4) and ls[3] == 0 and ls[2] == 0
    assert ls[4] == dtype(-np.log(2.0))


# ----------------------------------------------------------------------------- +inf: the limit, not NaN
# Deliberate deviations from torch (primitives.h): a row containing +inf gives the
# mathematical limit where torch gives NaN: the +inf entries share the probability mass.


def inf_rows(dtype):
    return np.array([[1.0, INF, -2.0, -INF],
                     [INF, INF, 0.0, 3.0],
                     [INF, INF, INF, INF],
                     [INF, -INF, -INF, -INF]], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_posinf_rows_take_the_limit(dtype, rng):
    x = inf_rows(dtype)
    before = x.copy()
    is_inf = x == INF
    ties = is_inf.sum(axis=1, keepdims=True)
    soft = np.where(is_inf, 1.0 / ties, 0.0)

    np.testing.assert_array_equal(lo.logsumexp(x), np.full(4, INF, dtype))
    np.testing.assert_array_equal(lo.softmax(x), soft.astype(dtype))
    expected_ls = np.where(is_inf, -np.log(ties), -INF).astype(dtype)
    assert_close(lo.log_softmax(x), expected_ls, dtype)

    g_row = randn(rng, (4,), dtype)
    assert_close(lo.logsumexp_backward(g_row, x), (g_row[:, None] * soft).astype(dtype), dtype)
    g = randn(rng, x.shape, dtype)
    # d log_softmax: g - softmax * sum(g); d softmax: softmax * (g - sum(g * softmax)).
    assert_close(lo.log_softmax_backward(g, x), g - soft * g.sum(axis=1, keepdims=True), dtype)
    assert_close(lo.softmax_backward(g, x), soft * (g - (g * soft).sum(axis=1, keepdims=True)), dtype)
    np.testing.assert_array_equal(x, before)

    # torch gives NaN in these rows: that is the deviation being pinned.
    assert torch.isnan(F.softmax(to_torch(x), dim=-1)).all()
    assert torch.isnan(F.log_softmax(to_torch(x), dim=-1)).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_posinf_with_nan_is_nan(dtype):
    x = np.array([[INF, np.nan, 0.0]], dtype)
    assert np.isnan(lo.logsumexp(x)).all()
    assert np.isnan(lo.softmax(x)).all()
    assert np.isnan(lo.log_softmax(x)).all()


# ----------------------------------------------------------------------------- dtypes, promotion, types


@pytest.mark.parametrize("xdt,gdt", [(np.float32, np.float64), (np.float64, np.float32)])
@pytest.mark.parametrize("name", ROW_FUNCS + ELEM_FUNCS)
def test_backward_promotes_mixed_dtypes(name, xdt, gdt, rng):
    """float32 with float64 computes in float64 (torch's promotion), equal to the float64 call."""
    x = randn(rng, (4, 9), xdt)
    gshape = (4,) if name == "logsumexp" else (4, 9)
    g = randn(rng, gshape, gdt)
    got = lo_backward(name, g, x)
    assert got.dtype == np.float64
    want = lo_backward(name, g.astype(np.float64), x.astype(np.float64))
    np.testing.assert_array_equal(got, want)
    assert_close(got, torch_vjp(torch_primitive(name, 2), x.astype(np.float64), g.astype(np.float64)), np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_logsumexp_all_axes_returns_numpy_scalar(dtype, rng):
    x = randn(rng, (3, 4), dtype)
    r = lo.logsumexp(x, axis=None)
    assert type(r) is np.dtype(dtype).type
    assert_close(r, torch.logsumexp(to_torch(x), dim=(0, 1)).item(), dtype)
    r1 = lo.logsumexp(x[0], axis=0)
    assert type(r1) is np.dtype(dtype).type
    r0 = lo.logsumexp(np.asarray(2.5, dtype))
    assert type(r0) is np.dtype(dtype).type and r0 == 2.5
    rk = lo.logsumexp(x, axis=None, keepdims=True)
    assert isinstance(rk, np.ndarray) and rk.shape == (1, 1) and rk.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_output_dtypes_are_native(dtype, rng):
    x = randn(rng, (3, 10), dtype)
    for name in ROW_FUNCS + ELEM_FUNCS:
        out = lo_forward(name, x)
        assert out.dtype == dtype, name
        g = np.ones(np.shape(out), dtype)
        assert lo_backward(name, g, x).dtype == dtype, name


def test_scalar_grad_output_for_full_reduction(rng):
    """logsumexp over all axes takes a Python float or 0-d array as grad_output."""
    x = randn(rng, (3, 4), np.float64)
    assert_close(lo.logsumexp_backward(2.0, x, axis=None), 2.0 * lo.softmax(x, axis=None), np.float64)
    assert_close(lo.logsumexp_backward(np.float64(2.0), x, axis=None), 2.0 * lo.softmax(x, axis=None), np.float64)
    assert_close(lo.logsumexp_backward(np.asarray(2.0), x, axis=None), 2.0 * lo.softmax(x, axis=None), np.float64)


def test_python_float_grad_keeps_float32():
    """A Python float upstream gradient is weakly typed (as in torch): float32 stays float32."""
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    assert lo.logsumexp_backward(1.0, x, axis=None).dtype == np.float32


# ----------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("name", ROW_FUNCS + ELEM_FUNCS)
def test_bad_dtypes_raise_typeerror(name):
    for bad in (np.arange(6).reshape(2, 3), np.ones((2, 3), ml_dtypes.float8_e4m3fn), np.ones((2, 3), complex),
                np.ones((2, 3), bool), [[1.0, 2.0]], 3.0):
        with pytest.raises(TypeError, match=r"\bx\b"):
            lo_forward(name, bad)
    x = np.ones((2, 3))
    g_shape = (2,) if name == "logsumexp" else (2, 3)
    with pytest.raises(TypeError, match="grad_output"):
        lo_backward(name, np.ones(g_shape, np.int64), x)
    with pytest.raises(TypeError, match=r"\bx\b"):
        lo_backward(name, np.ones(g_shape), np.ones((2, 3), np.int32))


@pytest.mark.parametrize("name", ROW_FUNCS + ELEM_FUNCS)
def test_bad_grad_shape_raises_valueerror(name):
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="grad_output"):
        lo_backward(name, np.ones((3, 2)), x)
    with pytest.raises(ValueError, match="grad_output"):
        lo_backward(name, np.ones((2, 3, 1)), x)


@pytest.mark.parametrize("name", ROW_FUNCS)
def test_bad_axes(name):
    x = np.ones((2, 3))
    with pytest.raises(AxisError, match="axis"):
        lo_forward(name, x, axis=2)
    with pytest.raises(AxisError, match="axis"):
        lo_forward(name, x, axis=(0, -3))
    with pytest.raises(ValueError, match="axis"):
        lo_forward(name, x, axis=(1, -1))
    with pytest.raises(TypeError, match="axis"):
        lo_forward(name, x, axis=1.0)
    with pytest.raises(TypeError, match="axis"):
        lo_forward(name, x, axis=True)
    with pytest.raises(AxisError, match="axis"):
        lo_backward(name, np.ones((2, 3)), x, axis=5)
