"""logitops: numerically stable log-sum-exp, softmax, sigmoid and classification losses,
forward and backward, on NumPy arrays, with torch.nn.functional's semantics.

See SPEC.md for the contract. The C++ core picks its SIMD path once at import
(``isa()``; force the portable one with ``LOGITOPS_ISA=scalar``).
"""

from __future__ import annotations

try:
    from . import _core
except ImportError as exc:  # pragma: no cover - only without a build
    if "LOGITOPS_ISA" in str(exc):
        raise
    raise ImportError(
        "logitops._core could not be imported: did you forget to build the package? "
        "Install it with `pip install .` from the source tree."
    ) from exc

from . import (
    _binary,
    _cross_entropy,
    _divergence,
    _linear_cross_entropy,
    _margin,
    _modules,
    _partials,
    _symmetric_ce,
)
from ._binary import *  # noqa: F401,F403  (its __all__)
from ._cross_entropy import *  # noqa: F401,F403  (its __all__)
from ._divergence import *  # noqa: F401,F403  (its __all__)
from ._linear_cross_entropy import *  # noqa: F401,F403  (its __all__)
from ._margin import *  # noqa: F401,F403  (its __all__)
from ._modules import *  # noqa: F401,F403  (its __all__: the loss objects)
from ._partials import LossPartials, combine_partials, loss_divisor, loss_partials  # noqa: F401
from ._primitives import (
    log_sigmoid,
    log_sigmoid_backward,
    log_softmax,
    log_softmax_backward,
    logsumexp,
    logsumexp_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_backward,
)
from ._symmetric_ce import *  # noqa: F401,F403  (its __all__)

__version__ = "0.1.0"


def isa() -> str:
    """The SIMD instruction set the kernels run on ("avx2", "scalar")."""
    return _core.isa()


def set_num_threads(n: int) -> None:
    """Threads the kernels may use (>= 1, at most 1024 are used). Results do not depend on it,
    bit for bit."""
    import numbers

    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    # The C++ side caps it (at 1024); this only keeps a huge Python int within a C int.
    _core.set_num_threads(min(int(n), 2**31 - 1))


def get_num_threads() -> int:
    """Threads the kernels may use (LOGITOPS_NUM_THREADS, else the number of CPUs)."""
    return _core.get_num_threads()


def set_result_cache_limit(nbytes: int) -> None:
    """Bytes of idle result memory kept for reuse (default 256 MiB, or LOGITOPS_RESULT_CACHE at
    import; 0 turns the cache off). Results from 128 KiB on are allocated by logitops and, once
    freed, kept for the next call of about their size, which then skips the page faults of
    fresh memory; lowering the limit frees idle buffers beyond it at once. Memory of arrays in
    use is never counted or touched."""
    import numbers

    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral):
        raise TypeError(f"nbytes must be an int, got {type(nbytes).__name__}")
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    _core.set_result_cache_limit(min(int(nbytes), 2**63 - 1))


def get_result_cache_limit() -> int:
    """The result cache's limit in bytes (set_result_cache_limit)."""
    return _core.get_result_cache_limit()


def empty_result_cache() -> None:
    """Frees every idle buffer of the result cache (arrays in use keep theirs)."""
    _core.empty_result_cache()


def result_cache_info() -> dict[str, int]:
    """The result cache's state: limit, bytes and buffers kept idle, hits and misses (calls
    served from it / by new memory), min_bytes (the smallest result it serves)."""
    return dict(_core.result_cache_info())


__all__ = [
    "isa",
    "set_num_threads",
    "get_num_threads",
    "set_result_cache_limit",
    "get_result_cache_limit",
    "empty_result_cache",
    "result_cache_info",
    "logsumexp",
    "logsumexp_backward",
    "log_softmax",
    "log_softmax_backward",
    "softmax",
    "softmax_backward",
    "log_sigmoid",
    "log_sigmoid_backward",
    "sigmoid",
    "sigmoid_backward",
    *_binary.__all__,
    *_cross_entropy.__all__,
    *_linear_cross_entropy.__all__,
    *_margin.__all__,
    *_divergence.__all__,
    *_symmetric_ce.__all__,
    *_modules.__all__,
    *_partials.__all__,
]
