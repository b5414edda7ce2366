"""logitops.dask (SPEC.md, Around the library): every loss over dask arrays chunked along the
batch axis equals the in-memory call (uneven chunks, class weights, ignore_index, label
smoothing, probability targets, every reduction, value_and_grad) on the threaded scheduler and
on a real distributed.LocalCluster with worker processes (spawned and forked); the graph has a
few tasks per block and nothing is computed before .compute(); bad layouts raise first."""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import logitops as lo

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
import logitops.dask as ld  # noqa: E402

CHUNKS = (3, 1, 17, 9, 20)  # uneven, one block of a single sample
N, C = sum(CHUNKS), 6


@pytest.fixture(params=["-"], autouse=True)
def isa():  # the cluster's workers choose their own ISA; the NumPy layer is tested per ISA elsewhere
    yield


def test_import_logitops_never_imports_dask():
    code = "import sys, logitops; assert 'dask' not in sys.modules, sorted(m for m in sys.modules if 'dask' in m)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _cases(rng, dtype=np.float32):
    """(name, NumPy kwargs); the dask arguments are cut from them by _dask_args."""
    x = rng.standard_normal((N, C)).astype(dtype) * 3
    y = rng.integers(0, C, N)
    y[rng.random(N) < 0.3] = 4  # ignored with ignore_index=4
    y[CHUNKS[0]] = 4  # the one-sample block is all ignored
    w = rng.uniform(0.05, 4.0, C).astype(dtype)
    t = rng.uniform(0, 1, (N, C)).astype(dtype)
    yield "cross_entropy", {"input": x, "target": y, "weight": w, "ignore_index": 4, "label_smoothing": 0.15}
    yield "cross_entropy", {"input": rng.standard_normal((N, C, 2)).astype(dtype), "target": rng.integers(0, C, (N, 2))}
    yield "cross_entropy", {"input": x, "target": rng.dirichlet(np.ones(C), N).astype(dtype), "weight": w,
                            "label_smoothing": 0.3}
    yield "nll_loss", {"input": x, "target": y, "weight": w, "ignore_index": 4}
    yield "binary_cross_entropy", {"input": rng.uniform(0.01, 0.99, (N, C)).astype(dtype), "target": t,
                                   "weight": rng.uniform(0.5, 2.0, (N, 1)).astype(dtype)}
    yield "binary_cross_entropy_with_logits", {"input": x, "target": t, "weight": w,
                                               "pos_weight": rng.uniform(0.5, 3.0, C).astype(dtype)}


CASE_IDS = ["ce-weight-ignore-smooth", "ce-3d", "ce-probs", "nll", "bce-rowweight", "bcel-pos"]


def _dask_args(kw):
    """The per-sample arrays as dask arrays cut into CHUNKS (a BCE row weight stays NumPy: it is cut
    into the input's blocks by logitops.dask)."""
    out = dict(kw)
    for k in ("input", "target"):
        v = kw[k]
        out[k] = da.from_array(v, chunks=(CHUNKS,) + v.shape[1:])
    return out


def _check_equal(name, kw, reduction, compute):
    dt = lo._checks.result_dtype(kw["input"], kw["target"] if kw["target"].dtype.kind == "f" else None)
    rtol = 4e-7 if dt == np.float32 else 1e-13
    dkw = _dask_args(kw)
    whole = getattr(lo, name)(**kw, reduction=reduction)
    ours = getattr(ld, name)(**dkw, reduction=reduction)
    assert isinstance(ours, da.Array)
    (got,) = compute(ours)
    assert got.dtype == np.asarray(whole).dtype and got.shape == np.shape(whole)
    np.testing.assert_allclose(got, whole, rtol=rtol, atol=0)
    loss, grad = getattr(ld, name + "_value_and_grad")(**dkw, reduction=reduction)
    assert grad.chunks[0] == CHUNKS and grad.shape == kw["input"].shape
    got_loss, got_grad = compute(loss, grad)
    want_loss, want_grad = getattr(lo, name + "_value_and_grad")(**kw, reduction=reduction)
    np.testing.assert_allclose(got_loss, want_loss, rtol=rtol, atol=0)
    # One product by 1/divisor away from the in-memory gradient; the divisor summed in another order.
    np.testing.assert_allclose(got_grad, want_grad, rtol=2 * np.finfo(dt).eps + N * 2.0**-52, atol=0)
    return whole


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", range(6), ids=CASE_IDS)
def test_threaded_equals_in_memory(case, reduction):
    name, kw = list(_cases(np.random.default_rng(case)))[case]
    _check_equal(name, kw, reduction, lambda *a: dask.compute(*a, scheduler="threads"))


def test_float64_and_legacy_arguments():
    name, kw = list(_cases(np.random.default_rng(7), np.float64))[0]
    _check_equal(name, kw, "mean", lambda *a: dask.compute(*a, scheduler="sync"))
    dkw = _dask_args(kw)
    with pytest.warns(UserWarning, match="reduction='sum'"):
        got = ld.cross_entropy(**dkw, size_average=False).compute()
    np.testing.assert_allclose(got, lo.cross_entropy(**kw, reduction="sum"), rtol=1e-13)


def test_mean_of_block_means_differs():
    """The case the issue names: dask_ml-style averaging of block means is measurably wrong here."""
    name, kw = list(_cases(np.random.default_rng(0)))[0]
    kw["input"][-CHUNKS[-1]:] *= 10  # the last block's losses are large: block sizes matter
    dkw = _dask_args(kw)
    whole = lo.cross_entropy(**kw)
    got = ld.cross_entropy(**dkw).compute()
    np.testing.assert_allclose(got, whole, rtol=4e-7)
    starts = np.cumsum((0,) + CHUNKS)
    means = [lo.cross_entropy(**{**kw, "input": kw["input"][a:b], "target": kw["target"][a:b]})
             for a, b in zip(starts, starts[1:])]
    naive = np.nanmean(means)  # (the one-sample block is all ignored: its mean is nan)
    assert abs(naive - whole) > 0.05 * whole, (naive, whole)


def test_primitives():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, C, 4)) * 10
    X = da.from_array(x, chunks=(CHUNKS, 2, 4))
    for axis in (-1, 1, 0, (0, 2), None):
        for keepdims in (False, True):
            np.testing.assert_allclose(ld.logsumexp(X, axis=axis, keepdims=keepdims).compute(),
                                       lo.logsumexp(x, axis=axis, keepdims=keepdims), rtol=1e-14)
    X = X.rechunk({1: -1})
    np.testing.assert_array_equal(ld.log_softmax(X, axis=1).compute(), lo.log_softmax(x, axis=1))
    np.testing.assert_array_equal(ld.softmax(X, axis=1, dtype=np.float32).compute(),
                                  lo.softmax(x, axis=1, dtype=np.float32))
    with pytest.raises(ValueError, match="x is chunked along axis 0"):
        ld.softmax(X, axis=0)


def test_signatures_are_the_numpy_apis():
    for name in ld.__all__:
        ours = inspect.signature(getattr(ld, name)).parameters
        theirs = {k: v for k, v in inspect.signature(getattr(lo, name)).parameters.items() if k not in ("out",)}
        assert [(p.name, p.default) for p in ours.values()] == [(p.name, p.default) for p in theirs.values()], name


class _Counting:
    """Dask arrays whose blocks are made by a function that counts its calls."""

    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def logits(self, block_info=None):
        with self.lock:
            self.calls += 1
        loc = block_info[None]["array-location"][0]
        return np.random.default_rng(loc[0]).standard_normal((loc[1] - loc[0], C)).astype(np.float32)

    def array(self):
        return da.map_blocks(self.logits, chunks=(CHUNKS, (C,)), dtype=np.float32, meta=np.empty((0, 0), np.float32))


def test_lazy_and_a_few_tasks_per_block():
    src = _Counting()
    X = src.array()
    y = np.random.default_rng(1).integers(0, C, N)
    Y = da.from_array(y, chunks=(CHUNKS,))
    w = np.linspace(0.5, 2, C).astype(np.float32)
    loss = ld.cross_entropy(X, Y, w, label_smoothing=0.1)
    vg_loss, grad = ld.cross_entropy_value_and_grad(X, Y, w)
    assert src.calls == 0  # building the graphs computed nothing
    nb = len(CHUNKS)
    for graph_of in (loss, grad, vg_loss):
        # O(blocks): per block its data (2), the zero-memory stand-in (2), the divisor's, the
        # fused loss-and-gradient's and the sum tree's few tasks (~10 at most); nothing global.
        tasks = len(dict(graph_of.__dask_graph__()))
        assert tasks <= 10 * nb + 10, tasks
    got_loss, got_grad = dask.compute(vg_loss, grad, scheduler="threads")
    assert src.calls == nb  # every logits block made once, shared by the loss and the gradient
    x = X.compute(scheduler="sync")
    want_loss, want_grad = lo.cross_entropy_value_and_grad(x, y, w)
    np.testing.assert_allclose(got_loss, want_loss, rtol=4e-7)
    np.testing.assert_allclose(got_grad, want_grad, rtol=2 * 2.0**-23, atol=0)


def test_bad_layouts_raise_before_any_task():
    src = _Counting()
    X = src.array()
    y = np.zeros(N, np.int64)
    Y = da.from_array(y, chunks=(CHUNKS,))
    with pytest.raises(ValueError, match=r"input is chunked along axis 1 \(the class axis"):
        ld.cross_entropy(X.rechunk({1: 2}), Y)
    with pytest.raises(ValueError, match="only the batch axis 0 may be chunked"):
        ld.cross_entropy(da.zeros((N, C, 4), chunks=(10, C, 2)), da.zeros((N, 4), dtype=int, chunks=(10, 2)))
    with pytest.raises(ValueError, match=r"target is chunked \(10, 10, 10, 10, 10\) along its axis 0, input"):
        ld.cross_entropy(X, Y.rechunk(10))
    with pytest.raises(ValueError, match="target has shape"):
        ld.nll_loss(X, np.zeros(N + 1, np.int64))
    with pytest.raises(ValueError, match="weight has shape"):
        ld.cross_entropy(X, Y, np.ones(C + 1, np.float32))
    with pytest.raises(TypeError, match="weight must be a NumPy array"):
        ld.cross_entropy(X, Y, da.ones(C, chunks=2))
    with pytest.raises(TypeError, match="input must be a dask array"):
        ld.cross_entropy(np.zeros((N, C), np.float32), Y)
    with pytest.raises(TypeError, match="input must have dtype float32, float64"):
        ld.cross_entropy(X.astype(np.int32), Y)
    with pytest.raises(ValueError, match="label_smoothing must be between"):
        ld.cross_entropy_value_and_grad(X, Y, label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction must be one of"):
        ld.cross_entropy(X, Y, reduction="avg")
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        ld.cross_entropy(X[X[:, 0] > 0], Y)
    t = da.zeros((N, C), np.float32, chunks=(CHUNKS, C))
    with pytest.raises(ValueError, match=r"target is chunked .* along its axis 1"):
        ld.binary_cross_entropy_with_logits(X, t.rechunk({1: 3}))
    with pytest.raises(ValueError, match="pos_weight of shape .* does not broadcast"):
        ld.binary_cross_entropy_with_logits(X, t, pos_weight=np.ones(C + 2, np.float32))
    with pytest.raises(ValueError, match="pos_weight of shape .* does not broadcast"):
        ld.binary_cross_entropy_with_logits(X, t, pos_weight=da.ones(C + 2, chunks=4))
    with pytest.raises(ValueError, match="weight is chunked"):
        ld.binary_cross_entropy(X, t, weight=da.ones((N, 1), chunks=10))
    assert src.calls == 0
    # A bad class target is found by its block's task, with the NumPy API's error.
    with pytest.raises(IndexError, match="Target 6 is out of bounds"):
        ld.cross_entropy_value_and_grad(X, Y + 6)[1].compute(scheduler="sync")


# ----------------------------------------------------------------------------- a real cluster


@pytest.fixture(scope="module", params=["spawn", "fork"])
def client(request):
    distributed = pytest.importorskip("distributed")
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("worker processes under ASan's preload start for minutes; the blocks' kernels are "
                    "covered by the threaded tests")
    # distributed's loggers quiet while the cluster lives: a worker forked while another thread of
    # this process held a logging handler's lock blocks on it at its first log line (seen with
    # distributed 2024.8: the forked worker hung in Handler.flush). Forked workers inherit the levels.
    names = ["distributed"] + [n for n in logging.root.manager.loggerDict if n.startswith("distributed.")]
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with dask.config.set({"distributed.worker.multiprocessing-method": request.param}):
            cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                               dashboard_address=None, memory_limit="1GiB")
            c = distributed.Client(cluster)
        # The start method took: a forked worker has the client's modules (logitops' extension
        # loaded before the fork), a spawned one starts empty.
        inherited = c.run(lambda: "logitops._core" in sys.modules)
        assert list(inherited.values()) == [request.param == "fork"] * 2, inherited
        yield c
        c.close()
        cluster.close()
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


@pytest.mark.parametrize("case", [0, 2, 5], ids=[CASE_IDS[i] for i in (0, 2, 5)])
def test_local_cluster_equals_in_memory(client, case):
    name, kw = list(_cases(np.random.default_rng(case)))[case]
    _check_equal(name, kw, "mean", lambda *a: client.compute(list(a), sync=True))
    # The blocks ran in the worker processes (serialized tasks and results), not on the client.
    assert len(client.run(lambda: 1)) == 2


def test_local_cluster_mean_of_block_means_differs(client):
    name, kw = list(_cases(np.random.default_rng(0)))[0]
    kw["input"][-CHUNKS[-1]:] *= 10  # as in test_mean_of_block_means_differs
    got = client.compute(ld.cross_entropy(**_dask_args(kw)), sync=True)
    np.testing.assert_allclose(got, lo.cross_entropy(**kw), rtol=4e-7)
