"""Memory safety where a caller does something legal but unusual:

- another Python thread writes an argument while a kernel runs (the GIL is released): the result
  may be wrong, as NumPy's would be, but nothing is read or written out of bounds;
- arrays whose data is not aligned to their itemsize (np.frombuffer at an odd offset);
- zero-size arrays whose other dimensions are huge (no loop over 2**60 empty rows or samples);
- byte-swapped targets, and what the private _core entry points check themselves.

Run under the ASan+UBSan build by .ci/run, where any out-of-bounds access fails the run.
The cases that would crash or hang run in a fresh interpreter with a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import logitops as lo
from logitops import _core

PKG_DIR = str(Path(lo.__file__).parent.parent)
TIMEOUT = 120


def run_script(body: str, isa: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOGITOPS_ISA": isa, "PYTHONPATH": PKG_DIR + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = "import numpy as np\nimport logitops as lo\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT)


def assert_ran(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr[-4000:]}"


# ----------------------------------------------------------------------------- races


def test_targets_changed_during_the_call(isa):
    """A writer thread flips class targets between a valid class and 2**40 while the kernels
    run: the range check happens before the kernels, so without the kernels' own bound the
    logits (and, for nll's gradient, the output) would be indexed at 2**40."""
    r = run_script(
        """
        import threading
        lo.set_num_threads(2)
        rng = np.random.default_rng(0)
        cases = [
            (rng.standard_normal((512, 300)).astype(np.float32), (512,)),       # rows
            (rng.standard_normal((4, 40, 1000)).astype(np.float32), (4, 1000)),  # lanes
        ]
        stop = False
        targets = []
        def writer():
            while not stop:
                for t in targets:
                    t[::7] = 2**40
                    t[::7] = 3
        w = threading.Thread(target=writer)
        w.start()
        bad = 0
        try:
            for x, tshape in cases:
                t = np.full(tshape, 3, dtype=np.int64)
                targets.append(t)
                for _ in range(40):
                    for f in (lambda: lo.cross_entropy_value_and_grad(x, t),
                              lambda: lo.cross_entropy(x, t, reduction="none", label_smoothing=0.1),
                              lambda: lo.nll_loss_value_and_grad(x, t, weight=np.ones(x.shape[1], np.float32)),
                              lambda: lo.nll_loss(x, t, reduction="sum")):
                        try:
                            f()
                        except IndexError:
                            bad += 1  # the check saw 2**40: the documented error
        finally:
            stop = True
            w.join()
        print("index errors", bad)
        """,
        isa,
    )
    assert_ran(r)


def test_inputs_changed_during_the_call(isa):
    """Logits, weights and BCE weights rewritten (NaN, inf, huge) while the kernels run: any
    values, never an out-of-bounds access or a crash."""
    r = run_script(
        """
        import threading
        lo.set_num_threads(2)
        rng = np.random.default_rng(1)
        x = rng.standard_normal((256, 500)).astype(np.float32)
        y = rng.integers(0, 500, 256)
        w = np.ones(500, np.float32)
        b = rng.standard_normal(400_000).astype(np.float32)
        bt = rng.random(400_000).astype(np.float32)
        stop = False
        def writer():
            vals = [np.nan, np.inf, -np.inf, 3e38, 0.0]
            i = 0
            while not stop:
                v = vals[i % len(vals)]
                x[:, ::3] = v; w[::5] = v; b[::11] = v; bt[::13] = v
                i += 1
        th = threading.Thread(target=writer)
        th.start()
        try:
            for _ in range(30):
                lo.cross_entropy_value_and_grad(x, y, weight=w, label_smoothing=0.2)
                lo.log_softmax(x)
                lo.softmax_backward(x, x)
                lo.binary_cross_entropy_with_logits_value_and_grad(b, bt)
                try:
                    lo.binary_cross_entropy(np.clip(b, 0, 1), bt)
                except ValueError:
                    pass  # a target rewritten out of [0, 1]: the documented error
        finally:
            stop = True
            th.join()
        """,
        isa,
    )
    assert_ran(r)


# ----------------------------------------------------------------------------- unaligned data


def unaligned(a: np.ndarray) -> np.ndarray:
    """A copy of `a` whose data address is 1 byte past an aligned one."""
    buf = bytearray(a.nbytes + 1)
    u = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned
    return u


def _calls(dt):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 7)).astype(dt)
    x3 = rng.standard_normal((3, 4, 5)).astype(dt)
    y = rng.integers(0, 7, 6)
    y3 = rng.integers(0, 4, (3, 5))
    w = rng.random(7).astype(dt)
    p = rng.random((6, 7)).astype(dt)
    g = rng.standard_normal((6, 7)).astype(dt)
    return {
        "logsumexp": (lo.logsumexp, (x,), {}),
        "logsumexp_axis0": (lo.logsumexp, (x,), {"axis": 0}),
        "logsumexp_backward": (lo.logsumexp_backward, (g[:, 0], x), {}),
        "log_softmax": (lo.log_softmax, (x,), {}),
        "softmax_axis0": (lo.softmax, (x,), {"axis": 0}),
        "log_softmax_backward": (lo.log_softmax_backward, (g, x), {}),
        "softmax_backward": (lo.softmax_backward, (g, x), {}),
        "sigmoid": (lo.sigmoid, (x,), {}),
        "log_sigmoid": (lo.log_sigmoid, (x,), {}),
        "sigmoid_backward": (lo.sigmoid_backward, (g, x), {}),
        "log_sigmoid_backward": (lo.log_sigmoid_backward, (g, x), {}),
        "bce": (lo.binary_cross_entropy, (p, p[::-1].copy()), {"weight": w}),
        "bce_vg": (lo.binary_cross_entropy_value_and_grad, (p, p[::-1].copy()), {}),
        "bce_backward": (lo.binary_cross_entropy_backward, (g, p, p[::-1].copy()), {"reduction": "none"}),
        "bcel": (lo.binary_cross_entropy_with_logits, (x, p), {"pos_weight": w}),
        "bcel_vg": (lo.binary_cross_entropy_with_logits_value_and_grad, (x, p), {"weight": w}),
        "ce": (lo.cross_entropy, (x, y), {"weight": w}),
        "ce_probs": (lo.cross_entropy, (x, p), {}),
        "ce_lanes_vg": (lo.cross_entropy_value_and_grad, (x3, y3), {"label_smoothing": 0.1}),
        "ce_backward": (lo.cross_entropy_backward, (g[:, 0], x, y), {"reduction": "none"}),
        "nll_vg": (lo.nll_loss_value_and_grad, (x, y), {"weight": w}),
        "nll_lanes": (lo.nll_loss, (x3, y3), {"reduction": "none"}),
    }


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(_calls(np.float32)))
def test_unaligned_arrays_give_the_aligned_result(name, dt):
    fn, args, kw = _calls(dt)[name]
    expected = fn(*args, **kw)
    # Every array argument unaligned at once (class targets included).
    u_args = [unaligned(a) if isinstance(a, np.ndarray) else a for a in args]
    u_kw = {k: unaligned(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    before = [a.copy() for a in u_args]
    got = fn(*u_args, **u_kw)
    for e, g in zip(expected if isinstance(expected, tuple) else (expected,), got if isinstance(got, tuple) else (got,)):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(e))
    for a, b in zip(u_args, before):
        np.testing.assert_array_equal(a, b)  # inputs unchanged


def test_unaligned_out_is_refused():
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    for call in (lambda o: lo.softmax(x, out=o), lambda o: lo.sigmoid(x, out=o),
                 lambda o: lo.cross_entropy_value_and_grad(x, y, out=o),
                 lambda o: lo.binary_cross_entropy_with_logits_value_and_grad(x, x, out=o)):
        with pytest.raises(ValueError, match="out must be aligned"):
            call(unaligned(np.zeros_like(x)))


def test_core_refuses_unaligned_and_wrong_ndim():
    """The private entry points check what their kernels rely on themselves."""
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="x must be aligned"):
        _core.softmax(unaligned(x))
    with pytest.raises(ValueError, match="x must be 2-D"):
        _core.softmax(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="x must be 2-D"):
        _core.logsumexp(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="x must be 2-D"):
        _core.log_softmax_backward(np.zeros((2, 3, 4), np.float32), np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="grad_output has the wrong size"):
        _core.sigmoid_backward(np.zeros(3, np.float32), np.zeros(4, np.float32))
    op, red = int(_core.LossOp.loss), int(_core.Reduction.mean)
    t = np.zeros(3, np.int64)
    with pytest.raises(ValueError, match="input has the wrong size"):
        _core.cross_entropy(op, red, x, t, None, None, 3, 5, 1, -100, 0.0, None, 1.0, None)
    with pytest.raises(ValueError, match="target has the wrong size"):
        _core.cross_entropy(op, red, x, t[:2], None, None, 3, 4, 1, -100, 0.0, None, 1.0, None)
    with pytest.raises(ValueError, match="bad layout"):
        _core.cross_entropy(op, red, x, t, None, None, 2**40, 2**40, 2**40, -100, 0.0, None, 1.0, None)
    with pytest.raises(ValueError, match="class indices or probabilities"):
        _core.nll_loss(op, red, x, None, x, None, 3, 4, 1, -100, 0.0, None, 1.0, None)
    with pytest.raises(ValueError, match="unknown LossOp"):
        _core.cross_entropy(7, red, x, t, None, None, 3, 4, 1, -100, 0.0, None, 1.0, None)
    with pytest.raises(ValueError, match="unknown Reduction"):
        _core.binary_cross_entropy(op, 3, x, x, None, 1, 1, None, 1, 1, None, 1.0, None)
    with pytest.raises(ValueError, match="weight: inconsistent broadcast layout"):
        _core.binary_cross_entropy_with_logits(op, red, x, x, np.ones(3, np.float32), 4, 1, None, 1, 1, None, 1.0,
                                               None)


# ----------------------------------------------------------------------------- zero-size, huge dims


def test_zero_size_inputs_with_huge_dimensions(isa):
    """Shapes like (2**59, 0, 2): no elements, but 2**60 rows or samples to loop over. Each call
    returns at once with the empty batch's results (SPEC: nan for "mean", 0 for "sum")."""
    r = run_script(
        """
        B = 2**59
        for shape in [(B, 0, 2), (2, 0, B), (0, B, 2), (B, 0), (0, B), (B, 2, 0), (0, 2**30, 2**29)]:
            x = np.empty(shape, np.float32)
            for axis in (0, 1, -1):
                y = lo.log_softmax(x, axis=axis); assert y.shape == shape
                y = lo.softmax_backward(x, x, axis=axis); assert y.shape == shape
            assert lo.sigmoid(x).shape == shape
            l, g = lo.binary_cross_entropy_with_logits_value_and_grad(x, x)
            assert np.isnan(l) and g.shape == shape
            if shape[1] == 0:  # probability targets: the class axis is empty, the samples are not
                l = lo.cross_entropy(x, x)
                assert np.isnan(l), l
                assert lo.cross_entropy(x, x, reduction="sum") == 0
                l, g = lo.cross_entropy_value_and_grad(x, x)
                assert np.isnan(l) and g.shape == shape
                assert lo.cross_entropy_backward(1.0, x, x, wrt="target").shape == shape
            if shape[0] == 0:  # class targets of shape (0, ...)
                t = np.empty((0,) + shape[2:], np.int64)
                assert np.isnan(lo.cross_entropy(x, t))
                l, g = lo.cross_entropy_value_and_grad(x, t, reduction="sum")
                assert l == 0 and g.shape == shape
                l, g = lo.nll_loss_value_and_grad(x, t)
                assert np.isnan(l) and g.shape == shape
        print("ok")
        """,
        isa,
    )
    assert_ran(r)
    assert r.stdout.strip() == "ok"


# ----------------------------------------------------------------------------- byte order


def test_byteswapped_uint64_targets_are_never_wrapped():
    """2**64 - 100 as big-endian uint64 must not become -100 (ignore_index) and be ignored."""
    x = np.zeros((2, 3), np.float32)
    for order in ("<", ">"):
        t = np.array([0, 2**64 - 100], dtype=order + "u8")
        with pytest.raises(IndexError, match=r"^Target 18446744073709551516 is out of bounds\.$"):
            lo.cross_entropy(x, t)
        with pytest.raises(IndexError, match=r"^Target 18446744073709551516 is out of bounds\.$"):
            lo.nll_loss_value_and_grad(x, t)
    # Big-endian class targets in range: the native values.
    t = np.array([2, 1], dtype=">u8")
    assert lo.cross_entropy(x, t) == lo.cross_entropy(x, t.astype(np.int64))


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["f32", "f64"])
def test_byteswapped_probability_targets(dt):
    """One rule for byte order: probability targets are taken with their values, as BCE targets
    and CE weights are."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4)).astype(dt)
    p = lo.softmax(rng.standard_normal((5, 4)).astype(dt))
    swapped = p.astype(p.dtype.newbyteorder(">"))
    assert not swapped.dtype.isnative
    for red in ("mean", "sum", "none"):
        np.testing.assert_array_equal(lo.cross_entropy(x, swapped, reduction=red), lo.cross_entropy(x, p, reduction=red))
    np.testing.assert_array_equal(lo.cross_entropy_backward(1.0, x, swapped, wrt="target"),
                                  lo.cross_entropy_backward(1.0, x, p, wrt="target"))
    expected = F.cross_entropy(torch.from_numpy(x), torch.from_numpy(p)).item()
    np.testing.assert_allclose(lo.cross_entropy(x, swapped), expected, rtol=1e-6 if dt == np.float32 else 1e-12)


# ----------------------------------------------------------------------------- probability targets


def test_ignore_index_with_probability_targets_raises_as_torch():
    x = np.zeros((3, 4), np.float32)
    p = np.full((3, 4), 0.25, np.float32)
    for ii in (0, 1, 3, 100):
        with pytest.raises(RuntimeError, match="ignore_index is not supported for floating point target"):
            F.cross_entropy(torch.from_numpy(x), torch.from_numpy(p), ignore_index=ii)
        for fn in (lo.cross_entropy, lo.cross_entropy_value_and_grad,
                   lambda *a, **k: lo.cross_entropy_backward(1.0, *a, **k)):
            with pytest.raises(ValueError, match="ignore_index is not supported for floating point target"):
                fn(x, p, ignore_index=ii)
    # Negative values (which no class has) are accepted, as torch accepts them.
    for ii in (-1, -100, -(2**40)):
        expected = F.cross_entropy(torch.from_numpy(x), torch.from_numpy(p), ignore_index=ii).item()
        assert lo.cross_entropy(x, p, ignore_index=ii) == pytest.approx(expected, rel=1e-6)
