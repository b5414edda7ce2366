"""The benchmark's cases: each declared once, in REGISTRY, by name, with its sizes and its
callables per library.

An Entry names the arrays its call takes (`args`: "x" the logits, "g" an upstream gradient, "t"
binary targets, "s" +-1 labels, "p" probabilities, "y" class indices, "b" logsumexp's weights, "out" a reused output buffer) and gives
the same computation for each library as that library's users write it: `ours` (logitops),
`torch` (the forward, or forward + backward through autograd for gradient rows; torchvision's
sigmoid_focal_loss is its composition written out in torch, torchvision not being installable
beside this torch), `numpy` and
`jax` (jax/optax, jit-compiled) where there is one. Library-specific callables are factories
taking the library (torch's and jax's are imported on first use, so an absent library costs
nothing and only blanks its column). build() makes one Case, the inputs and bound callables at
one size, from (name, shape, dtype) alone, so bench/memory.py can rebuild it in a fresh process.

Adding a case = one Entry in REGISTRY.
"""

from __future__ import annotations

import functools
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

import logitops as lo

try:  # bfloat16 rows (ml_dtypes comes with jax; importing it also lets np.dtype("bfloat16") resolve)
    import ml_dtypes
except ImportError:
    ml_dtypes = None

BIG = 1_000_000  # elements from which a case gets the memory column
TWO_THREADS = 100_000  # elements from which a case runs at 2 threads too
TINY = 100  # elements below which a case measures the per-call overhead (its own table)

Shape = tuple[int, ...]
Size = tuple[Shape, type]  # (shape, dtype)
Arrays = dict[str, np.ndarray]
Fn = Callable[..., object]


def f32(*shapes: Shape) -> tuple[Size, ...]:
    return tuple((s, np.float32) for s in shapes)


def f64(*shapes: Shape) -> tuple[Size, ...]:
    return tuple((s, np.float64) for s in shapes)


def bf16(*shapes: Shape) -> tuple[Size, ...]:
    """bfloat16 rows, when ml_dtypes is installed (else none)."""
    return tuple((s, ml_dtypes.bfloat16) for s in shapes) if ml_dtypes is not None else ()


def _to_torch(L: Any, v: np.ndarray) -> Any:
    """A tensor sharing v's memory; bfloat16 by its bits (invisible to the buffer protocol)."""
    if v.dtype.kind == "V" and v.dtype.name == "bfloat16":
        return L.torch.from_numpy(v.view(np.uint16)).view(L.torch.bfloat16)
    return L.torch.from_numpy(v)


# ----------------------------------------------------------------------------- libraries


@functools.cache
def torch_lib() -> SimpleNamespace | None:
    """torch and torch.nn.functional (as .torch, .F), or None when torch is not installed."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    return SimpleNamespace(torch=torch, F=F, version=torch.__version__)


@functools.cache
def jax_lib() -> SimpleNamespace | None:
    """jax, jax.numpy, jax.nn and optax (as .jax, .jnp, .nn, .optax), or None when absent."""
    # Single-threaded: XLA's thread pool is fixed when jax starts, so its column is the 1-thread
    # rows' only. Must be set before jax is imported.
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)  # float64 rows stay float64 (float32 stays float32)
    return SimpleNamespace(jax=jax, jnp=jnp, nn=jax.nn, optax=optax,
                           version=f"{jax.__version__} / optax {optax.__version__}")


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Entry:
    """One computation; its rows are its sizes."""

    name: str  # what is computed, e.g. "cross_entropy value+grad"
    family: str  # rows of one family are listed together, by size
    args: tuple[str, ...]  # the arrays the call takes, in order
    ours: Fn | None  # ours(*arrays), or ours(*arrays, out=buffer) when grad_out; None when `lot` is given
    io: Callable[[Arrays], tuple[int, int]]  # (bytes the computation must read, bytes it must write)
    sizes: tuple[Size, ...] = ()  # the full run
    quick: tuple[Size, ...] = ()  # the --quick subset
    tiny: tuple[Size, ...] = ()  # the per-call overhead table (both runs)
    torch: Callable[[Any], Fn] | None = None  # torch_lib() -> fn(*tensors)
    numpy: Fn | None = None  # fn(*arrays)
    numpy_max: int | None = None  # elements above which NumPy is not run (its temporaries)
    jax: Callable[[Any], Fn] | None = None  # jax_lib() -> a pure fn(*arrays), jit-compiled by build()
    # value+grad: the timed call writes its gradient into a reused buffer, as a training loop
    # calls it (not on tiny inputs, which measure the plain call); the memory column also
    # reports the plain call, which allocates a new gradient.
    grad_out: bool = False
    # logitops.torch rows: torch_lib() -> fn(*tensors), our side of the row, on the same tensors as
    # torch's (instead of `ours` on the arrays); the row is left out when torch is not installed.
    lot: Callable[[Any], Fn] | None = None
    # The same call writing into out= (out_form(*arrays, out=buffer)), for the default-vs-out=
    # table of functions whose array result takes out= (value+grad entries have it: grad_out).
    out_form: Fn | None = None


def _torch_autograd(loss: Callable[[Any], Fn]) -> Callable[[Any], Fn]:
    """torch's forward + backward w.r.t. the first argument, as a training step runs it."""

    def make(L: Any) -> Fn:
        fn = loss(L)

        def run(x, *rest):
            a = x.detach().requires_grad_(True)
            y = fn(a, *rest)
            y.backward() if y.dim() == 0 else y.backward(L.torch.ones_like(y))
            return a.grad

        return run

    return make


def _torch_log_softmax_backward(L: Any) -> Fn:
    def run(g, x):  # x.grad of log_softmax(x).backward(g)
        a = x.detach().requires_grad_(True)
        L.F.log_softmax(a, -1).backward(g)
        return a.grad

    return run


def _np_logsumexp(x):
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]


def _np_log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    s = x - m
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def _np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _np_ce(x, y):
    return -_np_log_softmax(x)[np.arange(len(y)), y].mean()


def _np_bce_logits(x, t):
    return np.mean(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))))


def _jax_bce_probs(J: Any) -> Fn:
    jnp = J.jnp

    def loss(p, t):  # torch's clamp of the logs at -100, as a user would port it
        return -(t * jnp.maximum(jnp.log(p), -100) + (1 - t) * jnp.maximum(jnp.log1p(-p), -100)).mean()

    return J.jax.value_and_grad(loss)


def _jax_ce(J: Any) -> Fn:
    return lambda x, y: J.optax.softmax_cross_entropy_with_integer_labels(x, y).mean()


def _jax_bce_logits(J: Any) -> Fn:
    return lambda x, t: J.optax.sigmoid_binary_cross_entropy(x, t).mean()


def _torch_focal(L: Any) -> Fn:
    """torchvision.ops.sigmoid_focal_loss (alpha 0.25, gamma 2), as torchvision composes it."""
    F = L.F

    def loss(x, t, alpha=0.25, gamma=2.0):
        p = L.torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        p_t = p * t + (1 - p) * (1 - t)
        return ((alpha * t + (1 - alpha) * (1 - t)) * (ce * ((1 - p_t) ** gamma))).mean()

    return loss


def _torch_sce(L: Any) -> Fn:
    """The seed's SymmetricCELoss(alpha=0.1, beta=1.0) as written in torch (clamps 1e-7 / 1e-4)."""
    F, torch = L.F, L.torch

    def loss(pred, labels):
        ce = F.cross_entropy(pred, labels)
        p = torch.clamp(F.softmax(pred, dim=1), min=1e-7, max=1.0)
        one_hot = torch.clamp(F.one_hot(labels, pred.shape[1]).to(pred.dtype), min=1e-4, max=1.0)
        rce = -1 * torch.sum(p * torch.log(one_hot), dim=1)
        return 0.1 * ce + 1.0 * rce.mean()

    return loss


_SEED_SCE = {"alpha": 0.1, "beta": 1.0, "prob_eps": 1e-7, "label_eps": 1e-4}


def _torch_weighted_lse(L: Any) -> Fn:
    """SciPy's weighted logsumexp written in torch (positive b): max, b * exp(x - max), sum, log."""
    torch = L.torch

    def lse(x, b):
        m = x.amax(dim=-1, keepdim=True)
        return (m + torch.log(torch.sum(b * torch.exp(x - m), dim=-1, keepdim=True)))[..., 0]

    return lse


def _torch_weighted_lse_grad(L: Any) -> Fn:
    f = _torch_weighted_lse(L)

    def run(x, b):
        a = x.detach().requires_grad_(True)
        y = f(a, b)
        y.backward(L.torch.ones_like(y))
        return y, a.grad

    return run


def _np_weighted_lse(x, b):
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.sum(b * np.exp(x - m), axis=-1, keepdims=True)))[..., 0]


def _lse_value_and_grad(x, b):
    return lo.logsumexp(x, b=b), lo.logsumexp_backward(np.ones(x.shape[0], x.dtype), x, b=b)


def _same(a: Arrays) -> tuple[int, int]:  # reads x, writes as much
    return a["x"].nbytes, a["x"].nbytes


def _two_in_one_out(a: Arrays) -> tuple[int, int]:  # reads two inputs of x's size, writes one
    return 2 * a["x"].nbytes, a["x"].nbytes


def _ce_io(grad: bool) -> Callable[[Arrays], tuple[int, int]]:
    return lambda a: (a["x"].nbytes + a["y"].nbytes, a["x"].nbytes if grad else 0)


ROWS = f32((64, 10), (8192, 1000), (4096, 1000), (2048, 32000))
ROWS_QUICK = f32((64, 10), (4096, 1000))
ROWS_BIG = tuple(s for s in ROWS if math.prod(s[0]) >= BIG)  # backward: only where it is not overhead
ROWS_BIG_QUICK = tuple(s for s in ROWS_QUICK if math.prod(s[0]) >= BIG)
ROWS_OUT = f32((2048, 32000))  # out= rows: where a fresh output's page faults show
VEC = f32((1000,), (100_000,), (10_000_000,))
VEC_QUICK = f32((1000,), (1_000_000,))
VEC_OUT = f32((10_000_000,))
BCE = f32((1000,), (100_000,), (2_000_000,), (10_000_000,))
BCE_QUICK = f32((200_000,), (1_000_000,))
ELEM_LOSS = f32((10_000_000,))
ELEM_LOSS_QUICK = f32((1_000_000,))
ROW_LOSS = f32((8192, 1000))
ROW_LOSS_QUICK = f32((1024, 1000))
CE = f32((64, 10), (8192, 1000), (2048, 32000), (256, 128256))
# Short rows: two classes (the seeds' [batch, 2] logits), three, four, ten; BCE-with-logits on as many
# elements (2e6) is the two-class case's yardstick.
SHORT = f32((1_000_000, 2), (1_000_000, 3), (1_000_000, 4), (1_000_000, 10))
SHORT_QUICK = f32((100_000, 2), (100_000, 10))
CE_QUICK = f32((4096, 1000), (256, 32000))


def _torch_out(fn_name: str) -> Callable[[Any], Fn]:
    """torch's own out= variant of a row (axis -1) or elementwise function."""
    row = fn_name in ("softmax", "log_softmax")

    def make(L: Any) -> Fn:
        f = {"softmax": L.torch.softmax, "log_softmax": L.torch.log_softmax,
             "sigmoid": L.torch.sigmoid, "log_sigmoid": L.F.logsigmoid}[fn_name]
        return (lambda x, out: f(x, -1, out=out)) if row else (lambda x, out: f(x, out=out))

    return make


REGISTRY: tuple[Entry, ...] = (
    Entry("logsumexp", "rows", ("x",), lambda x: lo.logsumexp(x),
          io=lambda a: (a["x"].nbytes, a["x"].nbytes // a["x"].shape[-1]),
          sizes=ROWS + SHORT + f64((4096, 1000)), quick=ROWS_QUICK + SHORT_QUICK + f64((4096, 1000)),
          torch=lambda L: lambda x: L.torch.logsumexp(x, -1), numpy=_np_logsumexp,
          jax=lambda J: lambda x: J.jax.scipy.special.logsumexp(x, axis=-1)),
    Entry("log_softmax", "rows", ("x",), lambda x: lo.log_softmax(x), io=_same,
          sizes=ROWS + SHORT, quick=ROWS_QUICK + SHORT_QUICK, tiny=f32((8, 4)), out_form=lambda x, out: lo.log_softmax(x, out=out),
          torch=lambda L: lambda x: L.F.log_softmax(x, -1), numpy=_np_log_softmax,
          jax=lambda J: lambda x: J.nn.log_softmax(x, axis=-1)),
    Entry("softmax", "rows", ("x",), lambda x: lo.softmax(x), io=_same, sizes=ROWS + SHORT, quick=ROWS_QUICK + SHORT_QUICK,
          out_form=lambda x, out: lo.softmax(x, out=out),
          torch=lambda L: lambda x: L.F.softmax(x, -1), numpy=_np_softmax,
          jax=lambda J: lambda x: J.nn.softmax(x, axis=-1)),
    Entry("log_softmax backward", "rows", ("g", "x"), lambda g, x: lo.log_softmax_backward(g, x),
          io=_two_in_one_out, sizes=ROWS_BIG + SHORT, quick=ROWS_BIG_QUICK + SHORT_QUICK, torch=_torch_log_softmax_backward,
          jax=lambda J: lambda g, x: J.jax.vjp(lambda v: J.nn.log_softmax(v, axis=-1), x)[1](g)[0]),
    Entry("log_softmax, out=", "rows", ("x", "out"), lambda x, out: lo.log_softmax(x, axis=-1, out=out),
          io=_same, sizes=ROWS_OUT, torch=_torch_out("log_softmax")),
    Entry("softmax, out=", "rows", ("x", "out"), lambda x, out: lo.softmax(x, axis=-1, out=out),
          io=_same, sizes=ROWS_OUT, torch=_torch_out("softmax")),
    Entry("log_sigmoid", "elementwise", ("x",), lambda x: lo.log_sigmoid(x), io=_same,
          sizes=VEC, quick=VEC_QUICK, out_form=lambda x, out: lo.log_sigmoid(x, out=out),
          torch=lambda L: L.F.logsigmoid, numpy=lambda x: -np.logaddexp(0, -x),
          jax=lambda J: J.nn.log_sigmoid),
    Entry("sigmoid", "elementwise", ("x",), lambda x: lo.sigmoid(x), io=_same,
          sizes=VEC, quick=VEC_QUICK, out_form=lambda x, out: lo.sigmoid(x, out=out),
          torch=lambda L: L.torch.sigmoid, numpy=lambda x: 1 / (1 + np.exp(-x)),
          jax=lambda J: J.nn.sigmoid),
    Entry("log_sigmoid, out=", "elementwise", ("x", "out"), lambda x, out: lo.log_sigmoid(x, out=out),
          io=_same, sizes=VEC_OUT, torch=_torch_out("log_sigmoid")),
    Entry("sigmoid, out=", "elementwise", ("x", "out"), lambda x, out: lo.sigmoid(x, out=out),
          io=_same, sizes=VEC_OUT, torch=_torch_out("sigmoid")),
    Entry("bce_with_logits forward", "bce", ("x", "t"), lambda x, t: lo.binary_cross_entropy_with_logits(x, t),
          io=lambda a: (2 * a["x"].nbytes, 0), sizes=BCE, quick=BCE_QUICK, tiny=f32((8,)),
          torch=lambda L: L.F.binary_cross_entropy_with_logits, numpy=_np_bce_logits, jax=_jax_bce_logits),
    Entry("bce_with_logits value+grad", "bce", ("x", "t"),
          lambda x, t, out=None: lo.binary_cross_entropy_with_logits_value_and_grad(x, t, out=out),
          io=_two_in_one_out, sizes=BCE, quick=BCE_QUICK, tiny=f32((8,)), grad_out=True,
          torch=_torch_autograd(lambda L: L.F.binary_cross_entropy_with_logits),
          jax=lambda J: J.jax.value_and_grad(_jax_bce_logits(J))),
    Entry("bce value+grad", "bce", ("p", "t"),
          lambda p, t, out=None: lo.binary_cross_entropy_value_and_grad(p, t, out=out),
          io=_two_in_one_out, sizes=BCE, quick=BCE_QUICK, grad_out=True,
          torch=_torch_autograd(lambda L: L.F.binary_cross_entropy), jax=_jax_bce_probs),
    # The neighbouring losses (issue 15), each against torch's own function or composition.
    Entry("kl_div forward", "divergence", ("x", "p"), lambda x, p: lo.kl_div(x, p, reduction="batchmean"),
          io=lambda a: (2 * a["x"].nbytes, 0), sizes=ELEM_LOSS, quick=ELEM_LOSS_QUICK,
          torch=lambda L: lambda x, p: L.F.kl_div(x, p, reduction="batchmean")),
    Entry("kl_div value+grad", "divergence", ("x", "p"),
          lambda x, p, out=None: lo.kl_div_value_and_grad(x, p, reduction="batchmean", out=out),
          io=_two_in_one_out, sizes=ELEM_LOSS, quick=ELEM_LOSS_QUICK, grad_out=True,
          torch=_torch_autograd(lambda L: lambda x, p: L.F.kl_div(x, p, reduction="batchmean"))),
    Entry("sigmoid_focal_loss forward", "divergence", ("x", "t"),
          lambda x, t: lo.sigmoid_focal_loss(x, t, reduction="mean"),
          io=lambda a: (2 * a["x"].nbytes, 0), sizes=ELEM_LOSS, quick=ELEM_LOSS_QUICK, torch=_torch_focal),
    Entry("sigmoid_focal_loss value+grad", "divergence", ("x", "t"),
          lambda x, t, out=None: lo.sigmoid_focal_loss_value_and_grad(x, t, reduction="mean", out=out),
          io=_two_in_one_out, sizes=ELEM_LOSS, quick=ELEM_LOSS_QUICK, grad_out=True,
          torch=_torch_autograd(_torch_focal)),
    Entry("soft_margin_loss forward", "margin", ("x", "s"), lambda x, s: lo.soft_margin_loss(x, s),
          io=lambda a: (2 * a["x"].nbytes, 0), sizes=ELEM_LOSS, quick=ELEM_LOSS_QUICK,
          torch=lambda L: L.F.soft_margin_loss),
    Entry("soft_margin_loss value+grad", "margin", ("x", "s"),
          lambda x, s, out=None: lo.soft_margin_loss_value_and_grad(x, s, out=out),
          io=_two_in_one_out, sizes=ELEM_LOSS, quick=ELEM_LOSS_QUICK, grad_out=True,
          torch=_torch_autograd(lambda L: L.F.soft_margin_loss)),
    Entry("multilabel_soft_margin_loss forward", "margin", ("x", "t"),
          lambda x, t: lo.multilabel_soft_margin_loss(x, t),
          io=lambda a: (2 * a["x"].nbytes, 0), sizes=ROW_LOSS, quick=ROW_LOSS_QUICK,
          torch=lambda L: L.F.multilabel_soft_margin_loss),
    Entry("multilabel_soft_margin_loss value+grad", "margin", ("x", "t"),
          lambda x, t, out=None: lo.multilabel_soft_margin_loss_value_and_grad(x, t, out=out),
          io=_two_in_one_out, sizes=ROW_LOSS, quick=ROW_LOSS_QUICK, grad_out=True,
          torch=_torch_autograd(lambda L: L.F.multilabel_soft_margin_loss)),
    Entry("cross_entropy forward", "cross_entropy", ("x", "y"), lambda x, y: lo.cross_entropy(x, y),
          io=_ce_io(grad=False), sizes=CE + SHORT, quick=CE_QUICK + SHORT_QUICK, tiny=f32((8, 4)),
          torch=lambda L: L.F.cross_entropy, numpy=_np_ce, numpy_max=10_000_000, jax=_jax_ce),
    Entry("cross_entropy value+grad", "cross_entropy", ("x", "y"),
          lambda x, y, out=None: lo.cross_entropy_value_and_grad(x, y, out=out),
          io=_ce_io(grad=True), sizes=CE + SHORT + f64((8192, 1000)) + bf16((2048, 32000), (256, 128256)),
          quick=CE_QUICK + SHORT_QUICK + bf16((256, 32000)), tiny=f32((8, 4)), grad_out=True,
          torch=_torch_autograd(lambda L: L.F.cross_entropy), jax=lambda J: J.jax.value_and_grad(_jax_ce(J))),
    Entry("symmetric_cross_entropy forward", "symmetric_ce", ("x", "y"),
          lambda x, y: lo.symmetric_cross_entropy(x, y, **_SEED_SCE),
          io=_ce_io(grad=False), sizes=f32((8192, 1000), (2048, 32000)), quick=f32((4096, 1000)),
          torch=_torch_sce),
    Entry("symmetric_cross_entropy value+grad", "symmetric_ce", ("x", "y"),
          lambda x, y, out=None: lo.symmetric_cross_entropy_value_and_grad(x, y, **_SEED_SCE, out=out),
          io=_ce_io(grad=True), sizes=f32((8192, 1000), (2048, 32000)), quick=f32((4096, 1000)), grad_out=True,
          torch=_torch_autograd(_torch_sce)),
    Entry("logsumexp, b=", "weighted_logsumexp", ("x", "b"), lambda x, b: lo.logsumexp(x, b=b),
          io=lambda a: (a["x"].nbytes + a["b"].nbytes, a["x"].nbytes // a["x"].shape[-1]),
          sizes=f32((8192, 1000), (1000, 10_000)), quick=f32((4096, 1000)),
          torch=_torch_weighted_lse, numpy=_np_weighted_lse),
    Entry("logsumexp, b= value+grad", "weighted_logsumexp", ("x", "b"), _lse_value_and_grad,
          io=lambda a: (a["x"].nbytes + a["b"].nbytes, a["x"].nbytes),
          sizes=f32((8192, 1000), (1000, 10_000)), quick=f32((4096, 1000)),
          torch=_torch_weighted_lse_grad),
    # What out= saves: the same call allocating a fresh gradient each time.
    Entry("cross_entropy value+grad, new grad", "cross_entropy", ("x", "y"),
          lambda x, y: lo.cross_entropy_value_and_grad(x, y),
          io=_ce_io(grad=True), sizes=f32((2048, 32000)), quick=f32((256, 32000)),
          torch=_torch_autograd(lambda L: L.F.cross_entropy), jax=lambda J: J.jax.value_and_grad(_jax_ce(J))),
)


def _lot(name: str) -> Callable[[Any], Fn]:
    """logitops.torch's function `name` (imported on first use, as torch is)."""

    def make(L: Any) -> Fn:
        import logitops.torch as lot

        return getattr(lot, name)

    return make


# A training step's loss through autograd, as a torch user runs it: forward + backward w.r.t. the
# logits, logitops.torch (its custom ops: the fused value+grad in the forward, the saved gradient
# handed to .grad in the backward) against torch.nn.functional, on the same tensors.
REGISTRY += (
    Entry("cross_entropy training step (logitops.torch)", "torch autograd", ("x", "y"), None,
          io=_ce_io(grad=True), sizes=f32((2048, 32000), (256, 128256)), quick=f32((256, 32000)), tiny=f32((8, 4)),
          lot=_torch_autograd(_lot("cross_entropy")), torch=_torch_autograd(lambda L: L.F.cross_entropy)),
    Entry("bce_with_logits training step (logitops.torch)", "torch autograd", ("x", "t"), None,
          io=_two_in_one_out, sizes=f32((10_000_000,)), quick=f32((1_000_000,)), tiny=f32((8,)),
          lot=_torch_autograd(_lot("binary_cross_entropy_with_logits")),
          torch=_torch_autograd(lambda L: L.F.binary_cross_entropy_with_logits)),
)

BY_NAME: dict[str, Entry] = {e.name: e for e in REGISTRY}
assert len(BY_NAME) == len(REGISTRY), "two entries share a name"


def plan(quick: bool) -> tuple[list[tuple[str, Shape, type]], list[tuple[str, Shape, type]]]:
    """(main table, tiny-input table) as (name, shape, dtype) triples. The main table lists each
    family's rows together, by size (in the order the family first declares it), then by entry."""
    families: list[str] = []
    size_rank: dict[tuple[str, Shape, str], int] = {}
    rows: list[tuple[int, int, int, tuple[str, Shape, type]]] = []
    registry = [e for e in REGISTRY if e.lot is None or torch_lib() is not None]
    for k, e in enumerate(registry):
        if e.family not in families:
            families.append(e.family)
        for shape, dtype in e.quick if quick else e.sizes:
            key = (e.family, shape, np.dtype(dtype).name)
            size_rank.setdefault(key, len(size_rank))
            rows.append((families.index(e.family), size_rank[key], k, (e.name, shape, dtype)))
    main = [r[-1] for r in sorted(rows, key=lambda r: r[:3])]
    tiny = [(e.name, shape, dtype) for e in registry for shape, dtype in e.tiny]
    return main, tiny


OUT_MIN_BYTES = 1 << 20  # the default-vs-out= table: results from 1 MiB on


def plan_out(quick: bool) -> list[tuple[str, Shape, type]]:
    """The default-vs-out= table as (name, shape, dtype): every entry whose array result takes out=,
    at its sizes whose result is at least OUT_MIN_BYTES, and at a 1 MiB float32 size of its kind
    ((262144,) or (256, 1024)): where a call's fixed costs weigh most."""
    rows: list[tuple[str, Shape, type]] = []
    for e in REGISTRY:
        if e.lot is not None or not (e.grad_out or e.out_form):
            continue
        sizes = list(e.quick if quick else e.sizes)
        if not sizes:
            continue
        edge: Shape = (262_144,) if len(sizes[0][0]) == 1 else (256, 1024)
        for shape, dtype in [(edge, np.float32), *sizes]:
            if math.prod(shape) * np.dtype(dtype).itemsize >= OUT_MIN_BYTES and (e.name, shape, dtype) not in rows:
                rows.append((e.name, shape, dtype))
    return rows


# ----------------------------------------------------------------------------- one case at one size


@dataclass
class Case:
    """One entry at one size: its inputs and the bound zero-argument calls."""

    name: str
    shape: Shape
    dtype: type
    ours: Fn  # the timed call (value+grad: into the reused `out` buffer)
    torch: Fn | None
    numpy: Fn | None
    jax: Fn | None
    bytes_in: int
    bytes_out: int
    ours_fresh: Fn | None = None  # value+grad: the call without out= (a new gradient)
    out: np.ndarray | None = None  # value+grad: the gradient buffer `ours` writes into
    # (the call without out=, the same into a reused buffer): the default-vs-out= table's pair
    default_vs_out: tuple[Fn, Fn] | None = None

    @property
    def size(self) -> str:
        return shape_str(self.shape)

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def threads(self) -> tuple[int, ...]:
        return (1, 2) if self.elements >= TWO_THREADS else (1,)


def shape_str(shape: Shape) -> str:
    if len(shape) == 1 and shape[0] >= 1000:
        s = f"{shape[0]:.0e}".replace("e+0", "e")
        if float(s) == shape[0]:
            return s  # 1e3, 1e7
    return "x".join(map(str, shape))


def make_inputs(name: str, shape: Shape, dtype: type, args: tuple[str, ...]) -> Arrays:
    """The arrays `args` names, drawn from a generator seeded by the case itself (the same
    numbers in every process)."""
    rng = np.random.default_rng(zlib.crc32(f"{name} {shape} {np.dtype(dtype).name}".encode()))
    native = np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float64))
    x = rng.standard_normal(shape, dtype=dtype if native else np.float32)
    x *= 3.0 if len(shape) == 2 else 4.0
    if not native:  # float16 / bfloat16: drawn in float32, rounded once
        x = x.astype(dtype)
    a: Arrays = {"x": x}
    if "g" in args:
        a["g"] = rng.standard_normal(shape, dtype=dtype)
    if "t" in args:
        a["t"] = (rng.random(shape) < 0.5).astype(dtype)
    if "s" in args:
        a["s"] = np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(dtype)
    if "p" in args:
        a["p"] = (1 / (1 + np.exp(-x))).astype(dtype)
    if "y" in args:
        a["y"] = rng.integers(0, shape[1], shape[0])
    if "b" in args:  # logsumexp's SciPy weights: full shape, positive
        a["b"] = rng.uniform(0.1, 2.0, shape).astype(dtype)
    if "out" in args:
        a["out"] = np.empty_like(x)
    unknown = set(args) - set(a)
    if unknown:
        raise ValueError(f"case {name!r}: no input named {sorted(unknown)}")
    return a


def build(name: str, shape: Shape, dtype: type = np.float32, *, with_jax: bool = True) -> Case:
    """The case `name` at `shape`/`dtype`: inputs made once, callables bound to them. torch's
    and jax's columns are None when the library is not installed (jax's also when with_jax is
    False or the entry has none)."""
    try:
        e = BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown case {name!r}; known: {', '.join(map(repr, BY_NAME))}") from None
    a = make_inputs(name, shape, dtype, e.args)
    arrays = [a[k] for k in e.args]
    n_el = math.prod(shape)

    fresh = out = None
    if e.lot is not None:
        if (L := torch_lib()) is None:
            raise RuntimeError(f"case {name!r} needs torch")
        ours = functools.partial(e.lot(L), *[L.torch.from_numpy(v) for v in arrays])
    elif e.grad_out and n_el >= TINY:
        assert e.ours is not None
        out = np.empty_like(a["x"])
        ours = functools.partial(e.ours, *arrays, out=out)
        fresh = functools.partial(e.ours, *arrays)
    else:
        assert e.ours is not None
        ours = functools.partial(e.ours, *arrays)
    pair = None
    if fresh is not None:
        pair = (fresh, ours)
    elif e.out_form is not None:
        pair = (ours, functools.partial(e.out_form, *arrays, out=np.empty_like(a["x"])))

    tfn = None
    if e.torch is not None and (L := torch_lib()) is not None:
        tensors = [_to_torch(L, v) for v in arrays]  # shares the arrays' memory
        tfn = functools.partial(e.torch(L), *tensors)

    nfn = None
    if e.numpy and (e.numpy_max is None or n_el <= e.numpy_max):
        nfn = functools.partial(e.numpy, *arrays)

    jfn = None
    if e.jax is not None and with_jax and (J := jax_lib()) is not None:
        compiled = J.jax.jit(e.jax(J))
        on_device = [J.jax.device_put(v) for v in arrays]

        def jfn():  # waits for the result: XLA runs asynchronously
            return J.jax.block_until_ready(compiled(*on_device))

    b_in, b_out = e.io(a)
    return Case(name, shape, dtype, ours, tfn, nfn, jfn, b_in, b_out, fresh, out, pair)
