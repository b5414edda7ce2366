"""The public API as a table, for the tests that walk all of it (bad and odd inputs, properties,
memory and threads): for every function family a builder of valid arguments (torch's
counterparts are in _oracle.py), and a report that collects every failure of a walk.

Functions are discovered from `logitops.__all__`: `<base>`, `<base>_backward` and
`<base>_value_and_grad` all use the builder of `<base>`; a public function whose base has no
builder here fails `test_every_public_function_has_a_builder` (test_bad_inputs.py), so a new
function cannot go untested. The loss objects (classes in `__all__`) are not functions: they
are left out of the walks and listed in LOSS_CLASSES with the function family each one calls
(`test_every_public_class_is_a_known_loss_object` in test_bad_inputs.py; tested in
test_loss_objects.py).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import numpy as np

import logitops as lo

SETTINGS = ("isa", "set_num_threads", "get_num_threads", "set_result_cache_limit", "get_result_cache_limit",
            "empty_result_cache", "result_cache_info")
# Mergeable partial results of the losses (tested in test_partials.py): helpers taking a loss
# function, not functions of a family, so the walks leave them out.
PARTIALS = ("loss_partials", "loss_divisor", "combine_partials")
ROW = ("logsumexp", "log_softmax", "softmax")
ELEM = ("log_sigmoid", "sigmoid")
PRIMITIVES = ROW + ELEM
BINARY = ("binary_cross_entropy", "binary_cross_entropy_with_logits")
CLASS = ("cross_entropy", "nll_loss")
# Losses of hidden states and a weight matrix (SPEC "LLM heads"): value_and_grad returns
# (loss, grad_input, grad_linear_weight, grad_linear_bias); no _backward.
LINEAR = ("linear_cross_entropy",)
# Elementwise (and, multilabel, row-reduced) losses of input's shape without class indices.
MARGIN = ("soft_margin_loss", "multilabel_soft_margin_loss")
DIVERGENCE = ("kl_div", "sigmoid_focal_loss")
ELEMENTWISE_LOSSES = MARGIN + DIVERGENCE
# Row losses with class targets and no weight/ignore_index (the walks' CLASS rules do not apply).
ROW_LOSS = ("symmetric_cross_entropy",)
LOSSES = BINARY + CLASS + ELEMENTWISE_LOSSES + ROW_LOSS
VARIANTS = ("_value_and_grad", "_backward")
# The loss objects and the function family each calls (test_loss_objects.py).
LOSS_CLASSES = {
    "BCELoss": "binary_cross_entropy",
    "BCEWithLogitsLoss": "binary_cross_entropy_with_logits",
    "CrossEntropyLoss": "cross_entropy",
    "NLLLoss": "nll_loss",
    "KLDivLoss": "kl_div",
    "SoftMarginLoss": "soft_margin_loss",
    "MultiLabelSoftMarginLoss": "multilabel_soft_margin_loss",
    "SigmoidFocalLoss": "sigmoid_focal_loss",
    "SymmetricCrossEntropyLoss": "symmetric_cross_entropy",
}


def split(name: str) -> tuple[str, str]:
    """'cross_entropy_backward' -> ('cross_entropy', 'backward'); a forward gives (name, '')."""
    for v in VARIANTS:
        if name.endswith(v):
            return name[: -len(v)], v[1:]
    return name, ""


def public_functions() -> list[str]:
    """Every public function but the process-wide settings, in __all__ order (classes are not
    functions: public_classes)."""
    return [n for n in lo.__all__ if n not in SETTINGS + PARTIALS and callable(getattr(lo, n))
            and not isinstance(getattr(lo, n), type)]


def public_classes() -> list[str]:
    """Every public class (the loss objects), in __all__ order."""
    return [n for n in lo.__all__ if isinstance(getattr(lo, n), type)]


def params(name: str) -> list[str]:
    return list(inspect.signature(getattr(lo, name)).parameters)


# ----------------------------------------------------------------------------- valid arguments
#
# A builder returns the forward's keyword arguments (by the names SPEC.md gives them) for an
# input of `shape`, with values from `values(shape)` for logits-like arguments (the property
# tests pass special values that way). Options not given take the function's defaults.

Values = Callable[[tuple], np.ndarray]


def normal_values(rng: np.random.Generator, scale: float = 3.0) -> Values:
    return lambda shape: rng.standard_normal(shape) * scale


def _probs(rng, shape):
    p = rng.uniform(0.02, 0.98, shape)
    return p


def build_primitive(base, rng, dtype, shape=(5, 7), values=None, axis=-1, keepdims=False, b=None, **_):
    """b (logsumexp's SciPy weights, positive here so torch can check them): None, 'full' or 'last'."""
    values = values or normal_values(rng)
    kw: dict[str, Any] = {"x": np.asarray(values(shape)).astype(dtype)}
    if base in ROW:
        kw["axis"] = axis
    if base == "logsumexp":
        kw["keepdims"] = keepdims
        if b is not None:
            kw["b"] = rng.uniform(0.2, 2.0, _weight_shape(shape, b)).astype(dtype)
    return kw


def _weight_shape(shape, kind):
    """A weight shape that broadcasts to `shape` without enlarging it."""
    if kind == "full" or not shape:
        return shape
    if kind == "last":
        return shape[-1:]
    if kind == "scalar":
        return ()
    if kind == "mid" and len(shape) >= 2:  # e.g. (C, 1) on (N, C, 1)... a leading-axis run
        return shape[-2:-1] + (1,)
    return shape[-1:]


def build_bce(base, rng, dtype, shape=(6, 5), values=None, reduction="mean", weight=None,
              pos_weight=None, target_dtype=None, **_):
    """weight / pos_weight: None or a kind ('full', 'last', 'scalar', 'mid')."""
    if base == "binary_cross_entropy":
        inp = _probs(rng, shape) if values is None else values(shape)
    else:
        inp = (values or normal_values(rng))(shape)
    kw: dict[str, Any] = {
        "input": np.asarray(inp).astype(dtype),
        "target": rng.uniform(0, 1, shape).astype(target_dtype or dtype),
        "reduction": reduction,
    }
    if weight is not None:
        kw["weight"] = rng.uniform(0.2, 2.0, _weight_shape(shape, weight)).astype(dtype)
    if pos_weight is not None and base == "binary_cross_entropy_with_logits":
        kw["pos_weight"] = rng.uniform(0.2, 3.0, _weight_shape(shape, pos_weight)).astype(dtype)
    return kw


def build_class(base, rng, dtype, shape=(6, 5), values=None, reduction="mean", weight=False,
                ignore_index=-100, n_ignored=0, label_smoothing=0.0, probs=False,
                target_dtype=np.int64, **_):
    """cross_entropy / nll_loss: input (C,), (N, C) or (N, C, d...); class-index targets
    (n_ignored of them set to ignore_index) or, for cross_entropy with probs=True, probability
    targets of input's shape."""
    values = values or normal_values(rng)
    x = np.asarray(values(shape)).astype(dtype)
    kw: dict[str, Any] = {"input": x, "reduction": reduction}
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else shape[:1] + shape[2:]
    if probs:
        t = rng.uniform(0, 1, shape)
        t /= np.maximum(t.sum(axis=0 if len(shape) == 1 else 1, keepdims=True), 1e-30)
        kw["target"] = t.astype(dtype)
    else:
        if not np.can_cast(np.min_scalar_type(ignore_index), target_dtype):
            target_dtype = np.int64  # e.g. uint8 targets cannot hold ignore_index=-100
        t = rng.integers(0, max(C, 1), tshape).astype(target_dtype)
        if n_ignored:
            flat = t.reshape(-1)
            k = min(n_ignored, flat.size)
            flat[rng.permutation(flat.size)[:k]] = ignore_index
        kw["target"] = t
    if weight:
        kw["weight"] = rng.uniform(0.2, 2.0, (C,)).astype(dtype)
    if base == "cross_entropy":
        kw["label_smoothing"] = label_smoothing
    if ignore_index != -100:
        kw["ignore_index"] = ignore_index
    return kw


def build_linear(base, rng, dtype, shape=(6, 5), values=None, reduction="mean", weight=False, ignore_index=None,
                 n_ignored=0, label_smoothing=0.0, bias=False, **_):
    """linear_cross_entropy: input (N, D) (shape[0] = N), linear_weight (V, D) with V = shape[1]
    and D = 4, class targets."""
    values = values or normal_values(rng, 1.0)
    N, V = (shape[0], shape[1]) if len(shape) >= 2 else (1, shape[0])
    h = np.asarray(values((N, 4))).astype(dtype)
    kw: dict[str, Any] = {"input": h, "linear_weight": rng.standard_normal((V, 4)).astype(dtype),
                          "reduction": reduction, "label_smoothing": label_smoothing}
    t = rng.integers(0, max(V, 1), N)
    ii = -100 if ignore_index is None else ignore_index
    if n_ignored:
        t[rng.permutation(N)[: min(n_ignored, N)]] = ii
    kw["target"] = t
    if ignore_index is not None:
        kw["ignore_index"] = ignore_index
    if weight:
        kw["weight"] = rng.uniform(0.2, 2.0, (V,)).astype(dtype)
    if bias:
        kw["linear_bias"] = rng.standard_normal(V).astype(dtype)
    return kw


def build_elementwise(base, rng, dtype, shape=(6, 5), values=None, reduction="mean", weight=None,
                      log_target=False, alpha=0.25, gamma=2.0, target_dtype=None, **_):
    """kl_div, soft_margin_loss, multilabel_soft_margin_loss, sigmoid_focal_loss: an input of
    `shape` (logits; log-probabilities for kl_div) and a target of the same shape (probabilities,
    their logs with log_target, +-1 labels for soft_margin_loss). weight (multilabel): None or a
    kind of _weight_shape (True: 'last'). sigmoid_focal_loss's arguments are inputs/targets."""
    x = np.asarray((values or normal_values(rng))(shape)).astype(dtype)
    tdt = target_dtype or dtype
    if base == "soft_margin_loss":
        t = rng.choice([-1.0, 1.0], shape)
    elif base == "kl_div" and log_target:
        t = np.log(rng.uniform(0.01, 1, shape))
    else:
        t = rng.uniform(0, 1, shape)
    t = np.asarray(t).astype(tdt)
    if base == "sigmoid_focal_loss":
        return {"inputs": x, "targets": t, "alpha": alpha, "gamma": gamma, "reduction": reduction}
    kw: dict[str, Any] = {"input": x, "target": t, "reduction": reduction}
    if base == "kl_div" and log_target:
        kw["log_target"] = True
    if base == "multilabel_soft_margin_loss" and weight is not None and weight is not False:
        kind = "last" if weight is True else weight
        kw["weight"] = rng.uniform(0.2, 2.0, _weight_shape(shape, kind)).astype(dtype)
    return kw
def build_row_loss(base, rng, dtype, shape=(6, 5), values=None, reduction="mean", alpha=0.5, beta=1.0,
                   prob_eps=1e-3, label_eps=1e-4, target_dtype=np.int64, **_):
    """symmetric_cross_entropy: input (N, C), class indices (N,); prob_eps 1e-3 so that the clamp
    acts on some probabilities."""
    values = values or normal_values(rng)
    x = np.asarray(values(shape)).astype(dtype)
    C = shape[1] if len(shape) > 1 else 1
    return {"input": x, "target": rng.integers(0, max(C, 1), shape[:1]).astype(target_dtype), "alpha": alpha,
            "beta": beta, "reduction": reduction, "prob_eps": prob_eps, "label_eps": label_eps}


BUILDERS: dict[str, Callable[..., dict]] = {
    **{b: build_primitive for b in PRIMITIVES},
    "binary_cross_entropy": build_bce,
    "binary_cross_entropy_with_logits": build_bce,
    "cross_entropy": build_class,
    "nll_loss": build_class,
    "linear_cross_entropy": build_linear,
    **{b: build_elementwise for b in ELEMENTWISE_LOSSES},
    "symmetric_cross_entropy": build_row_loss,
}


def forward_kwargs(base: str, rng, dtype=np.float64, **opts) -> dict:
    return BUILDERS[base](base, rng, np.dtype(dtype), **opts)


def is_reduced(base: str, kw: dict) -> bool:
    return base in LOSSES and kw.get("reduction", "mean") != "none"


def grad_output_for(base: str, kw: dict, rng, value: float | None = None) -> Any:
    """A valid upstream gradient for `base`'s output on kw: a scalar for reduced losses, else
    an array of the forward's output shape (torch's where torch is installed: _forward_shape)."""
    dt = first_array(kw).dtype
    for a in (kw.get("target"), kw.get("weight"), kw.get("pos_weight")):
        if isinstance(a, np.ndarray) and a.dtype == np.float64:
            dt = np.dtype(np.float64)
    if is_reduced(base, kw):
        return np.asarray(0.75 if value is None else value, dtype=dt)
    shape = _forward_shape(base, kw)
    g = rng.standard_normal(shape) if value is None else np.full(shape, value)
    return g.astype(dt)


def _forward_shape(base: str, kw: dict) -> tuple:
    """The forward's output shape: torch's where torch is installed; without it (the emulated
    aarch64 run of .ci/aarch64: Debian has no torch for arm64) our own forward's, which the x86
    suite holds to torch's."""
    try:
        from _oracle import torch_forward
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        return np.shape(getattr(lo, base)(**kw))
    return torch_forward(base, kw).shape


def call_kwargs(name: str, rng, dtype=np.float64, **opts) -> dict:
    """Valid keyword arguments of public function `name` (forward, backward or fused)."""
    base, variant = split(name)
    kw = forward_kwargs(base, rng, dtype, **opts)
    if variant == "backward":
        kw = {"grad_output": grad_output_for(base, kw, rng), **kw}
    return kw


def first_name(kw: dict) -> str:
    """The name of the first array argument: x (primitives), input, or inputs (focal loss)."""
    return "x" if "x" in kw else "inputs" if "inputs" in kw else "input"


def target_name(kw: dict) -> str:
    return "targets" if "targets" in kw else "target"


def first_array(kw: dict) -> np.ndarray:
    return kw[first_name(kw)]


def differentiable_wrt(base: str, kw: dict) -> tuple[str, ...]:
    """The arguments whose gradients the library gives (SPEC: target too where torch has it)."""
    if base in PRIMITIVES:
        return ("x",)
    if base in ("binary_cross_entropy", "binary_cross_entropy_with_logits"):
        return ("input", "target")
    if base == "cross_entropy" and np.asarray(kw["target"]).dtype.kind == "f":
        return ("input", "target")
    if base in ("kl_div", "multilabel_soft_margin_loss"):
        return ("input", "target")
    if base == "sigmoid_focal_loss":
        return ("inputs",)
    return ("input",)


# ----------------------------------------------------------------------------- calling ours


def snapshot(kw: dict) -> dict:
    return {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray)}


def assert_unchanged(kw: dict, before: dict, except_: tuple = ("out",)) -> None:
    for k, v in before.items():
        if k in except_ or kw[k] is kw.get("out"):
            continue
        a = kw[k]
        same = a.shape == v.shape and a.dtype == v.dtype and (
            a.tolist() == v.tolist() if a.dtype == object else a.tobytes() == v.tobytes())
        assert same, f"argument {k} was modified"


def call(name: str, kw: dict) -> Any:
    """getattr(lo, name)(**kw), asserting that no input array is modified (out excepted)."""
    before = snapshot(kw)
    try:
        return getattr(lo, name)(**kw)
    finally:
        assert_unchanged(kw, before)


def ours_grad(base: str, kw: dict, grad_output: Any, wrt: str = "input") -> np.ndarray:
    extra = {"wrt": wrt} if wrt not in ("x", "input", "inputs") else {}
    return call(base + "_backward", {"grad_output": grad_output, **kw, **extra})


def full_kwargs(name: str, rng, dtype=np.float64, **opts) -> dict:
    """Valid arguments of `name` with every optional array present (weight, pos_weight)."""
    base = split(name)[0]
    if base in BINARY:
        opts.setdefault("weight", "last")
        opts.setdefault("pos_weight", "last")
    if base in CLASS or base in LINEAR:
        opts.setdefault("weight", True)
    if base in LINEAR:
        opts.setdefault("bias", True)
    if base == "multilabel_soft_margin_loss":
        opts.setdefault("weight", "last")
    if base == "logsumexp":
        opts.setdefault("b", "last")
    return call_kwargs(name, rng, dtype, **opts)


def funcs_of(*bases: str, variants=("", "backward", "value_and_grad")) -> list[str]:
    """The public functions of these families and variants ('' is the forward)."""
    return [n for n in public_functions() if split(n)[0] in bases and split(n)[1] in variants]


# ----------------------------------------------------------------------------- walking the API


class Report:
    """Collects every failed expectation of a test, so one run shows them all. check() also
    fails a test that checked nothing (an empty walk cannot pass)."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.checked = 0

    def fail(self, msg: str) -> None:
        self.failures.append(msg)

    def expect(self, ok: Any, msg: str) -> None:
        self.checked += 1
        if not ok:
            self.fail(msg)

    def raises(self, what: str, exc: type[Exception], names: tuple[str, ...], name: str, kw: dict,
               match: str | None = None) -> None:
        """lo.<name>(**kw) must raise exc whose message names one of `names` (and says `match`)."""
        self.checked += 1
        try:
            r = call(name, kw)
        except AssertionError:
            raise
        except exc as e:
            msg = str(e)
            if names and not any(re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", msg) for n in names):
                self.fail(f"{name} [{what}]: {type(e).__name__}({msg!r}) does not name {names}")
            if match is not None and match not in msg:
                self.fail(f"{name} [{what}]: {type(e).__name__}({msg!r}) does not say {match!r}")
        except Exception as e:  # noqa: BLE001 - the wrong type is the failure we report
            self.fail(f"{name} [{what}]: raised {type(e).__name__}({str(e)[:200]!r}), expected {exc.__name__}")
        else:
            self.fail(f"{name} [{what}]: returned {repr(r)[:120]}, expected {exc.__name__}")

    def check(self) -> None:
        assert self.checked, "nothing was checked"
        assert not self.failures, f"{len(self.failures)} failures:\n" + "\n".join(self.failures)
