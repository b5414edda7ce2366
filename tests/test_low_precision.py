"""float16 and bfloat16 (SPEC "Low precision"): every public function takes them, computes in
float32 with float64 sums, and returns torch's dtype, each result rounded once.

- the conversion kernels, bit for bit: tests/test_conversions.py (no torch: it runs under
  the emulated aarch64 build too);
- every public function (the _api.py walk), every reduction: the result's dtype, each value
  within ULP_LOW of a float64 reference on the same 16-bit inputs (torch in float64), and
  within TORCH_LOW of torch computing on the same 16-bit tensors;
- sums: a float16 mean over 2e5 losses is finite and exact where torch's is not a number;
- memory: no float32 copy of the input (peak resident memory);
- dtypes: mixed ones promote as torch; unknown 16- and 8-bit formats raise naming the argument.
"""

from __future__ import annotations

import os
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch
from _api import BINARY, CLASS, LOSSES, Report, call, call_kwargs, public_functions, split
from _helpers import LOW_DTYPES, dtype_id, ulp_error
from _oracle import to_numpy_low, to_torch_low, torch_backward, torch_forward, torch_function
from _tolerances import BF16, F16, F32, F64, TORCH_LOW, ULP_LOW

import logitops as lo

FUNCS = public_functions()

# ----------------------------------------------------------------------------- every function


def _cases(name: str, rng, dt: np.dtype) -> list[tuple[str, dict]]:
    """(label, kwargs) of `name` with 16-bit arguments: every reduction, weights, shapes with
    several float32 blocks and (for cross-entropy) the lane layout and probability targets."""
    base = split(name)[0]
    out = []
    shapes = [(5, 7), (40, 1100)] + ([(3, 6, 20)] if base in CLASS else [])
    for shape in shapes:
        if base in LOSSES:
            for red in ("none", "mean", "sum"):
                opts: dict[str, Any] = {"shape": shape, "reduction": red}
                if base in BINARY:
                    opts.update(weight="last", pos_weight="last")
                else:
                    opts.update(weight=True, n_ignored=2)
                kw = call_kwargs(name, rng, dt, **opts)
                if base == "multilabel_soft_margin_loss":
                    # Hard labels: with soft ones its gradient sigmoid(x) - t cancels in float32
                    # already (test_margin.py), more than a 16-bit ulp where p ~ t.
                    kw["target"] = np.round(kw["target"].astype(np.float32)).astype(dt)
                out.append((f"{shape} {red}", kw))
            if base == "cross_entropy":
                out.append((f"{shape} smoothing", call_kwargs(name, rng, dt, shape=shape, label_smoothing=0.2)))
                out.append((f"{shape} probs", call_kwargs(name, rng, dt, shape=shape, probs=True, reduction="none")))
        else:
            out.append((f"{shape}", call_kwargs(name, rng, dt, shape=shape)))
    return out


def _references(name: str, kw: dict) -> list[np.ndarray]:
    """torch's results of lo.<name>(**kw) in float64 on the same 16-bit values, in the order
    of ours (forward; backward; fused: loss, gradient)."""
    base, variant = split(name)
    if variant == "":
        return [torch_forward(base, kw)]
    if variant == "backward":
        fw = {k: v for k, v in kw.items() if k not in ("grad_output", "wrt")}
        return [torch_backward(base, fw, kw["grad_output"], kw.get("wrt", "input"))]
    fw = {k: v for k, v in kw.items() if k != "out"}
    return [torch_forward(base, fw), torch_backward(base, fw, np.ones(np.shape(torch_forward(base, fw))))]


def _torch_low(name: str, kw: dict, dt: np.dtype) -> list[np.ndarray]:
    """torch's results on the same 16-bit tensors (torch's own low-precision arithmetic)."""
    base, variant = split(name)
    f, names = torch_function(base, kw)
    ts = [to_torch_low(kw[n]) for n in names]
    if variant == "":
        with torch.no_grad():
            return [to_numpy_low(f(*ts), dt)]
    wrt = "x" if "x" in kw else kw.get("wrt", names[0])  # (sigmoid_focal_loss's is "inputs")
    ts[names.index(wrt)].requires_grad_(True)
    y = f(*ts)
    go = kw["grad_output"] if variant == "backward" else np.ones(tuple(y.shape), dt)
    y.backward(to_torch_low(np.asarray(go, dtype=dt)).reshape(y.shape))
    grad = to_numpy_low(ts[names.index(wrt)].grad, dt)
    return [grad] if variant == "backward" else [to_numpy_low(y, dt), grad]


def _ours(name: str, kw: dict) -> list[Any]:
    r = call(name, kw)
    return list(r) if isinstance(r, tuple) else [r]


@pytest.mark.parametrize("dt", LOW_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name", FUNCS)
def test_every_function_within_one_ulp_and_torchs_dtype(name, dt, rng):
    """Each result has the input's 16-bit dtype and is within ULP_LOW of the float64 value on
    the same inputs; against torch's own 16-bit computation within TORCH_LOW."""
    rep = Report()
    for label, kw in _cases(name, rng, dt):
        ours = _ours(name, kw)
        refs = _references(name, kw)
        try:
            lows = _torch_low(name, kw, dt)
        except RuntimeError as e:  # torch lacks some 16-bit CPU kernels
            lows = None
            rep.expect("not implemented" in str(e), f"{name} [{label}]: torch raised {e}")
        if split(name)[0] == "sigmoid_focal_loss" and dt == np.float16:
            # torchvision's composition is eight float16 operations; a "mean" over 44000 elements
            # makes its gradients ~1e-5, where float16 keeps 3 digits or fewer: torch's own
            # numbers are off there, ours are checked against float64 above.
            lows = None
        for i, (got, ref) in enumerate(zip(ours, refs)):
            got = np.asarray(got)
            rep.expect(got.dtype == dt, f"{name} [{label}] result {i}: dtype {got.dtype}, expected {dt}")
            rep.expect(got.shape == np.shape(ref), f"{name} [{label}] result {i}: shape {got.shape}")
            if got.dtype != dt or got.shape != np.shape(ref):
                continue
            err = ulp_error(got, np.asarray(ref, np.float64))
            worst = float(err.max()) if err.size else 0.0
            rep.expect(worst <= ULP_LOW, f"{name} [{label}] result {i}: {worst:.3g} ulp from float64 "
                       f"(at {np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()})")
            if lows is not None:
                # Where torch's float16 sum overflowed (a "sum" or "mean" of 44000 losses) it
                # has inf or NaN and we the float64 value checked above: compared elsewhere.
                low = np.asarray(lows[i]).astype(np.float64)
                fin = np.isfinite(low) | np.isnan(np.asarray(ref, np.float64))
                rtol, atol = TORCH_LOW[dt]
                scale = float(np.max(np.abs(low[fin]))) if fin.any() else 0.0
                a, b = got.astype(np.float64)[fin], low[fin]
                close = np.allclose(a, b, rtol=rtol, atol=atol * scale, equal_nan=True)
                rep.expect(close, f"{name} [{label}] result {i}: differs from torch's {dt} computation "
                           f"(scale {scale:.3g}): {np.argwhere(~np.isclose(a, b, rtol, atol * scale, True))[:3]}")
    rep.check()


@pytest.mark.parametrize("dt", LOW_DTYPES, ids=dtype_id)
def test_out_and_in_place(dt, rng):
    """out= of the 16-bit dtype receives the result; out=input overwrites the logits with
    the gradient (block by block: each block is read before it is written)."""
    x = (rng.standard_normal((30, 2000)) * 3).astype(dt)
    y = rng.integers(0, 2000, 30)
    loss, grad = lo.cross_entropy_value_and_grad(x, y)
    buf = x.copy()
    loss2, grad2 = lo.cross_entropy_value_and_grad(buf, y, out=buf)
    assert grad2 is buf and loss2 == loss
    np.testing.assert_array_equal(buf.view(np.uint16), grad.view(np.uint16))
    for name in ("softmax", "log_softmax", "sigmoid", "log_sigmoid"):
        want = getattr(lo, name)(x)
        buf = x.copy()
        assert getattr(lo, name)(buf, out=buf) is buf
        np.testing.assert_array_equal(buf.view(np.uint16), want.view(np.uint16), err_msg=name)
    with pytest.raises(TypeError, match="out"):
        lo.softmax(x, out=np.empty(x.shape, np.float32))


@pytest.mark.parametrize("dt", LOW_DTYPES, ids=dtype_id)
def test_results_do_not_depend_on_the_thread_count(dt, rng):
    before = lo.get_num_threads()
    x = (rng.standard_normal((300, 3000)) * 2).astype(dt)
    y = rng.integers(0, 3000, 300)
    t = rng.uniform(0, 1, x.shape).astype(dt)
    y_lanes = rng.integers(0, 4, (300, 10))
    runs = []
    try:
        for n in (1, 2, 3):
            lo.set_num_threads(n)
            runs.append([lo.cross_entropy_value_and_grad(x, y), lo.cross_entropy(x[:, :40].reshape(300, 4, 10), y_lanes),
                         lo.binary_cross_entropy_with_logits_value_and_grad(x, t), lo.log_softmax(x),
                         lo.logsumexp(x)])
    finally:
        lo.set_num_threads(before)

    def flat(r):
        return [np.asarray(v).tobytes() for item in r for v in (item if isinstance(item, tuple) else (item,))]

    assert flat(runs[0]) == flat(runs[1]) == flat(runs[2])


CE_ROW_CASES = {
    "plain": {},
    "weight": {"weight": True},
    "smoothing": {"label_smoothing": 0.1},
    "weight+smoothing+ignored": {"weight": True, "label_smoothing": 0.3, "ignore": True},
    "z_loss": {"z_loss": 1e-3},
}


@pytest.mark.parametrize("dt", LOW_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [(1, 33), (7, 129), (40, 1100), (3, 20001)], ids=str)
@pytest.mark.parametrize("case", list(CE_ROW_CASES))
def test_cross_entropy_rows_are_the_rounded_float32_results(dt, shape, case, rng):
    """cross_entropy over 16-bit rows (read and written by the kernels in 16 bits) gives exactly
    the float32 call's results on the widened values, each rounded once to the 16-bit format:
    per-sample losses, the gradient of value_and_grad and of the backward with a per-sample
    upstream gradient, at 1 and 2 threads (rows, several per group and one longer than a block)."""
    opts = dict(CE_ROW_CASES[case])
    n, c = shape
    x = (rng.standard_normal(shape) * 3).astype(dt)
    x.reshape(-1)[:: max(1, x.size // 5)] = np.array(-np.inf, dt)  # -inf logits in some rows
    y = rng.integers(0, c, n)
    kw: dict[str, Any] = {}
    if opts.pop("weight", False):
        kw["weight"] = rng.uniform(0.5, 2, c).astype(np.float32)
    if opts.pop("ignore", False):
        y[:: 3] = -100
    kw.update(opts)
    x32 = x.astype(np.float32)
    go = rng.uniform(-1, 1, n).astype(dt)
    before = lo.get_num_threads()
    try:
        for threads in (1, 2):
            lo.set_num_threads(threads)
            exp_l, exp_g = lo.cross_entropy_value_and_grad(x32, y, reduction="none", **kw)
            got_l, got_g = lo.cross_entropy_value_and_grad(x, y, reduction="none", **kw)
            assert got_l.dtype == got_g.dtype == dt
            np.testing.assert_array_equal(got_l.view(np.uint16), exp_l.astype(dt).view(np.uint16))
            np.testing.assert_array_equal(got_g.view(np.uint16), exp_g.astype(dt).view(np.uint16))
            _, mean_g = lo.cross_entropy_value_and_grad(x32, y, **kw)
            np.testing.assert_array_equal(lo.cross_entropy_value_and_grad(x, y, **kw)[1].view(np.uint16),
                                          mean_g.astype(dt).view(np.uint16))
            exp_b = lo.cross_entropy_backward(go.astype(np.float32), x32, y, reduction="none", **kw)
            got_b = lo.cross_entropy_backward(go, x, y, reduction="none", **kw)
            np.testing.assert_array_equal(got_b.view(np.uint16), exp_b.astype(dt).view(np.uint16))
    finally:
        lo.set_num_threads(before)


# ----------------------------------------------------------------------------- sums


def test_float16_mean_of_many_losses_is_exact_where_torch_overflows(rng):
    """torch sums float16 losses in float16: over 2e5 samples the sum passes 65504 and its mean
    is inf or NaN. Ours sums in float64: the mean is the float64 mean rounded once."""
    x = rng.standard_normal((200_000, 3)).astype(F16)
    y = rng.integers(0, 3, 200_000)
    ours = lo.cross_entropy(x, y)
    want = torch_forward("cross_entropy", {"input": x, "target": y})
    theirs = float(torch.nn.functional.cross_entropy(to_torch_low(x), torch.from_numpy(y)))
    assert not np.isfinite(theirs)
    assert ours.dtype == F16 and float(ulp_error(np.asarray(ours), np.asarray(want))) <= 0.5 + 1e-3
    t = rng.uniform(0, 1, 200_000).astype(F16)
    xb = x[:, 0].copy()
    ours = lo.binary_cross_entropy_with_logits(xb, t, reduction="sum")
    want = torch_forward("binary_cross_entropy_with_logits", {"input": xb, "target": t, "reduction": "sum"})
    assert float(want) > 65504 and np.isinf(ours)  # a sum beyond float16's range is inf, correctly rounded
    ours = lo.binary_cross_entropy_with_logits(xb, t)
    want = torch_forward("binary_cross_entropy_with_logits", {"input": xb, "target": t})
    assert float(ulp_error(np.asarray(ours), np.asarray(want))) <= 0.5 + 1e-3


def test_bfloat16_mean_is_exact_where_torchs_is_off(rng):
    x = (rng.standard_normal((100_000, 8)) * 2).astype(BF16)
    y = rng.integers(0, 8, 100_000)
    ours = lo.cross_entropy(x, y)
    want = float(torch_forward("cross_entropy", {"input": x, "target": y}))
    theirs = float(torch.nn.functional.cross_entropy(to_torch_low(x), torch.from_numpy(y)))
    assert float(ulp_error(np.asarray(ours), np.asarray(want))) <= 0.5 + 1e-3
    assert abs(theirs - want) >= abs(float(ours) - want)


# ----------------------------------------------------------------------------- memory


def _peak_rss_reset() -> bool:
    """Resets the process's peak resident memory (Linux: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's peak-RSS reset")
def test_no_float32_copy_of_the_input(rng):
    """bfloat16 2048 x 8192 (32 MB; a float32 copy: 64 MB): value+grad into out=, the forward,
    softmax into out= and the backward raise the peak resident memory by far less than one
    float32 copy (a few thread-local blocks)."""
    x = rng.standard_normal((2048, 8192), dtype=np.float32).astype(BF16)
    y = rng.integers(0, 8192, 2048)
    out = np.empty_like(x)
    f32_copy_kb = x.size * 4 // 1024
    calls = {
        "cross_entropy_value_and_grad(out=)": lambda: lo.cross_entropy_value_and_grad(x, y, out=out),
        "cross_entropy": lambda: lo.cross_entropy(x, y),
        "log_softmax(out=)": lambda: lo.log_softmax(x, out=out),
        "sigmoid(out=)": lambda: lo.sigmoid(x, out=out),
        "binary_cross_entropy_with_logits": lambda: lo.binary_cross_entropy_with_logits(x, out),
    }
    # The result cache off: a temporary taken from it would be resident before the measured call.
    limit = lo.get_result_cache_limit()
    lo.set_result_cache_limit(0)
    try:
        for what, fn in calls.items():
            fn()  # thread-local blocks allocated once
            if not _peak_rss_reset():
                pytest.skip("cannot reset the peak resident memory")
            base = _status_kb("VmRSS")
            fn()
            grown = _status_kb("VmHWM") - base
            assert grown < f32_copy_kb // 8, f"{what}: peak memory grew by {grown} kB (a float32 copy is {f32_copy_kb} kB)"
    finally:
        lo.set_result_cache_limit(limit)


# ----------------------------------------------------------------------------- dtypes


def test_mixed_dtypes_promote_as_torch(rng):
    x = rng.standard_normal((6, 5))
    t = rng.uniform(0, 1, (6, 5))
    for a, b, want in ((F16, BF16, F32), (BF16, F16, F32), (BF16, F32, F32), (F16, F32, F32), (BF16, F64, F64),
                       (F32, BF16, F32)):
        got = lo.binary_cross_entropy_with_logits(x.astype(a), t.astype(b), reduction="none")
        assert got.dtype == want, (a, b, got.dtype)
        exact = lo.binary_cross_entropy_with_logits(x.astype(a).astype(F64), t.astype(b).astype(F64), reduction="none")
        np.testing.assert_allclose(got.astype(F64), exact, rtol=2e-7 if want == F32 else 1e-14)
        torch_dt = torch.nn.functional.binary_cross_entropy_with_logits(
            to_torch_low(x.astype(a)), to_torch_low(t.astype(b)), reduction="none").dtype
        if a != b and F64 not in (a, b) and F32 not in (a, b):
            # torch's BCE-with-logits returns the target's dtype for float16 + bfloat16 (the
            # quirk the README lists for float32 + float64); we promote, as torch's rules say.
            assert torch_dt in (torch.float16, torch.bfloat16)
        g = lo.softmax_backward(t.astype(b), x.astype(a))
        assert g.dtype == want
        p = lo.cross_entropy(x.astype(a), t.astype(b) / t.sum(1, keepdims=True).astype(b), reduction="none")
        assert p.dtype == want
    # class weights never promote, and are not rounded to the input's format
    xb = x.astype(BF16)
    y = rng.integers(0, 5, 6)
    w = np.array([1.0, 1 + 2**-12, 3.0, 0.1, 7.0])
    got = lo.cross_entropy(xb, y, w, reduction="none")
    assert got.dtype == BF16
    exact = lo.cross_entropy(xb.astype(F64), y, w, reduction="none")
    assert float(ulp_error(got, exact).max()) <= ULP_LOW
    assert lo.cross_entropy(xb, y, w.astype(F16)).dtype == BF16
    # grad_output of another 16-bit format promotes the backward to float32 (torch's rule)
    g = lo.cross_entropy_backward(np.ones(6, F16), xb, y, reduction="none")
    assert g.dtype == F32
    assert lo.log_softmax(xb, dtype=np.float32).dtype == F32
    assert lo.softmax(x, dtype=BF16).dtype == BF16
    assert lo.log_softmax_backward(np.ones((6, 5), np.float32), xb, dtype=np.float32).dtype == BF16


def _unknown_formats() -> list[tuple[str, Any]]:
    out = [("V2", np.dtype("V2")), ("int16", np.dtype(np.int16))]
    for name in ("float8_e4m3fn", "float8_e5m2", "int4", "float4_e2m1fn"):
        if hasattr(ml_dtypes, name):
            out.append((name, np.dtype(getattr(ml_dtypes, name))))
    return out


@pytest.mark.parametrize("label,dt", _unknown_formats(), ids=[n for n, _ in _unknown_formats()])
def test_unknown_low_precision_formats_raise_naming_the_argument(label, dt, rng):
    rep = Report()
    for name in FUNCS:
        kw = call_kwargs(name, rng, F32)
        for arg in ("x", "input", "target", "weight", "grad_output"):
            v = kw.get(arg)
            if not isinstance(v, np.ndarray) or v.dtype.kind != "f" or (arg == "grad_output" and v.ndim == 0):
                continue
            bad = v.astype(dt) if dt.kind != "V" or dt.fields is not None or dt.names else np.zeros(v.shape, dt)
            rep.raises(f"{arg} {label}", TypeError, (arg,), name, {**kw, arg: bad})
    rep.check()


def test_byte_swapped_float16_is_its_values(rng):
    x = rng.standard_normal((4, 9)).astype(F16)
    swapped = x.astype(F16.newbyteorder(">"))
    np.testing.assert_array_equal(lo.log_softmax(swapped), lo.log_softmax(x))
    assert lo.cross_entropy(swapped, np.array([0, 3, 8, 1])) == lo.cross_entropy(x, np.array([0, 3, 8, 1]))
