"""Cross-machine reference for the aarch64 build (.ci/aarch64): every public function on seeded
inputs, computed on x86-64 and compared under emulation.

  make OUT.npz   (x86-64, with torch for the test suite's argument builders) writes the inputs of
                 every case (tests/_api.py's call_kwargs: every public function, float32, float64,
                 float16, bfloat16, every reduction, a row with a vector tail and a long one; the
                 float32 and float64 cases of the short rows also in odd layouts: arrays at an address not a multiple of their itemsize,
                 every other element of a wider array, reversed) and what the scalar and avx2
                 paths returned (or raised), plus every float16 / bfloat16 pattern widened and
                 tests/test_conversions.py's float32 patterns narrowed.
  check REF.npz  (aarch64) computes every case on every ISA of this build and compares:
                   aarch64 scalar vs x86 scalar: the same bits (the same C++ with no contraction,
                     IEEE arithmetic on both; a NaN matches any NaN: x86 and ARM make NaNs of
                     different signs);
                   neon vs x86 avx2: counted (the same lane operations, fused the same way, but
                     4 lanes against 8 regroup sums), reported;
                   neon vs x86 scalar: elementwise and per-row results within 4 ulp of each other
                     apart from cancellation (SPEC: each is within 4 ulp of the exact value, so the
                     bound between two paths is 8; results smaller than 2^-10 of the case's
                     largest magnitude are compared absolutely at that scale), the same exceptions;
                   conversions: every ISA gives x86 scalar's bits, NaN payloads included.
                 Exits non-zero on any failure, after printing each one.
Inputs travel as plain arrays (a bfloat16 one as its uint16 bits) and JSON, so NumPy 2 on x86
and Debian's NumPy 1.24 on arm64 read them alike.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import logitops as lo  # noqa: E402
from logitops import _core  # noqa: E402

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # check mode still runs the other dtypes
    BF16 = None

# kl_div's reduction="mean" warns at every call, as torch's does.
warnings.filterwarnings("ignore", message="reduction: 'mean' divides the total loss")

# neon against x86 scalar, per value: within OWN_ULPS of the value's ulp (each path within 4 of
# the exact value, SPEC), or within SCALE_ULPS of the ulp of the output's largest magnitude.
OWN_ULPS = 8.0
SCALE_ULPS = 2.0

LAYOUTS = ("contiguous", "unaligned", "every_other", "reversed")
SHAPES = ((7, 37), (3, 1030))


def dtype_tag(dt: np.dtype) -> str:
    return "bfloat16" if BF16 is not None and dt == BF16 else dt.str


def from_tag(tag: str) -> np.dtype:
    return BF16 if tag == "bfloat16" else np.dtype(tag)


def relayout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values in another memory layout."""
    if layout == "contiguous" or a.ndim == 0:
        return a
    if layout == "unaligned":  # an address 1 byte past an aligned one: misaligned for every itemsize > 1
        buf = np.zeros(a.nbytes + a.itemsize, np.uint8)
        out = buf[1 : 1 + a.nbytes].view(a.dtype).reshape(a.shape)
        out[...] = a
        assert a.itemsize == 1 or not out.flags.aligned
        return out
    if layout == "every_other":
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    if layout == "reversed":
        r = np.ascontiguousarray(a[..., ::-1])
        return r[..., ::-1]
    raise ValueError(layout)


def bits(a: np.ndarray) -> np.ndarray:
    a = np.array(a, order="C", copy=True)  # (ascontiguousarray would make a 0-d array 1-d)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize])


def call(name: str, args: dict) -> list[np.ndarray] | str:
    try:
        out = getattr(lo, name)(**args)
    except Exception as e:  # noqa: BLE001 - the exception is the result to compare
        return f"{type(e).__name__}: {e}"
    return flat_results(out)


def flat_results(out: object) -> list[np.ndarray]:
    """A function's arrays, nested tuples flattened (None left out, in the same place on both sides)."""
    if isinstance(out, tuple):
        return [a for o in out for a in flat_results(o)]
    return [] if out is None else [np.asarray(out)]


def build_cases():
    """(name, label, kwargs) of every public function: tests/_api.py's builders."""
    from _api import LINEAR, LOSSES, call_kwargs, public_functions, split

    rng = np.random.default_rng(20240917)
    dtypes = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)] + ([BF16] if BF16 else [])
    for name in public_functions():
        base = split(name)[0]
        if base in LINEAR:
            # Its matrix products are NumPy's BLAS (another build on each machine); its
            # cross-entropy is cross_entropy's, compared here.
            continue
        for dt in dtypes:
            for shape in SHAPES:
                reductions = ("none", "mean", "sum") if base in LOSSES else (None,)
                for red in reductions:
                    opts = {"shape": shape} if red is None else {"shape": shape, "reduction": red}
                    # The odd layouts of the short rows of float32 and float64 (emulation's time)
                    odd = dt in (np.float32, np.float64) and shape == SHAPES[0]
                    layouts = LAYOUTS if odd else LAYOUTS[:1]
                    yield name, f"{dtype_tag(dt)} {shape} {red or ''}", layouts, call_kwargs(name, rng, dt, **opts)


def conversion_inputs() -> dict[str, np.ndarray]:
    """Every 16-bit pattern, and tests/test_conversions.py's float32 patterns."""
    from test_conversions import ALL_16, PATTERNS

    return {"all16": ALL_16, "f32": PATTERNS}


def conversions(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for fmt, dt in (("f16", np.dtype(np.float16)), ("bf16", BF16)):
        if dt is None:
            continue
        out[f"widen_{fmt}"] = bits(_core._widen(inputs["all16"].view(dt)))
        out[f"narrow_{fmt}"] = bits(_core._narrow(inputs["f32"], np.zeros(1, dt)))
    return out


# ----------------------------------------------------------------------------- make


def make(path: Path) -> None:
    arrays: dict[str, np.ndarray] = {}
    meta = []
    conv_in = conversion_inputs()
    arrays.update({f"conv_in/{k}": v for k, v in conv_in.items()})
    for isa in ("scalar", "avx2"):
        _core._set_isa(isa)
        arrays.update({f"conv/{isa}/{k}": v for k, v in conversions(conv_in).items()})
    for i, (name, label, layouts, kw) in enumerate(build_cases()):
        case = {"name": name, "label": label, "layouts": layouts, "scalars": {}, "arrays": {}, "results": {}}
        for k, v in kw.items():
            if isinstance(v, np.ndarray):
                arrays[f"c{i}/in/{k}"] = bits(v) if dtype_tag(v.dtype) == "bfloat16" else v
                case["arrays"][k] = dtype_tag(v.dtype)
            else:
                case["scalars"][k] = v.item() if isinstance(v, np.generic) else v
        for layout in layouts:
            args = load_args(case, arrays, i, layout)
            for isa in ("scalar", "avx2"):
                _core._set_isa(isa)
                res = call(name, args)
                if isinstance(res, str):
                    case["results"][f"{layout}/{isa}"] = res
                else:
                    case["results"][f"{layout}/{isa}"] = [dtype_tag(r.dtype) for r in res]
                    for j, r in enumerate(res):
                        arrays[f"c{i}/out/{layout}/{isa}/{j}"] = bits(r)
        meta.append(case)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez_compressed(path, **arrays)
    n = sum(len(c["layouts"]) for c in meta)
    print(f"{len(meta)} cases, {n} with the layouts, on x86 scalar and avx2, written to {path}")


def load_args(case: dict, arrays, i: int, layout: str) -> dict:
    args = dict(case["scalars"])
    for k, tag in case["arrays"].items():
        a = np.asarray(arrays[f"c{i}/in/{k}"])
        if tag == "bfloat16":
            a = a.view(BF16)
        args[k] = relayout(a, layout)
    return args


# ----------------------------------------------------------------------------- check


def ulp_distance(a: np.ndarray, b: np.ndarray, dt: np.dtype) -> np.ndarray:
    """|a - b| in ulps of the larger of the two (of the format's smallest normal below it), both
    taken to float64; equal values (infinities included) and NaN pairs are 0, NaN vs a number inf."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    info = np.finfo(np.float32 if dt == BF16 else dt)
    nmant = 7 if dt == BF16 else info.nmant
    tiny = float(np.finfo(np.float32).tiny if dt == BF16 else info.tiny)
    with np.errstate(all="ignore"):
        mag = np.maximum(np.maximum(np.abs(a64), np.abs(b64)), tiny)
        ulp = 2.0 ** (np.floor(np.log2(mag)) - nmant)
        d = np.abs(a64 - b64) / ulp
    same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
    d = np.where(same, 0.0, d)
    return np.where(np.isnan(a64) != np.isnan(b64), np.inf, d)


def check(path: Path) -> int:
    ref = np.load(path)
    meta = json.loads(bytes(ref["meta"]).decode())
    isas = list(_core.available_isas())
    vector = [i for i in isas if i != "scalar"]
    failures: list[str] = []
    stats = {"outputs": 0, "scalar_identical": 0, "neon_identical_to_avx2": 0, "neon_max_ulp_vs_scalar": 0.0,
             "neon_max_scale_ulp": 0.0, "neon_max_ulp_forward": 0.0, "worst_forward": "",
             "nan_sign_differs": 0, "skipped_bf16": 0}

    conv_in = {k.split("/", 1)[1]: ref[k] for k in ref.files if k.startswith("conv_in/")}
    for isa in isas:
        _core._set_isa(isa)
        for k, v in conversions(conv_in).items():
            if not np.array_equal(v, ref[f"conv/scalar/{k}"]):
                n = int((v != ref[f"conv/scalar/{k}"]).sum())
                failures.append(f"conversion {k} on {isa}: {n} patterns differ from x86 scalar")
    t0 = time.time()
    for i, case in enumerate(meta):
        if BF16 is None and "bfloat16" in case["arrays"].values():
            stats["skipped_bf16"] += 1
            continue
        name, label = case["name"], case["label"]
        for layout in case["layouts"]:
            args = load_args(case, ref, i, layout)
            for isa in isas:
                _core._set_isa(isa)
                got = call(name, args)
                x86_isa = "scalar" if isa == "scalar" else "avx2"
                want = case["results"][f"{layout}/{x86_isa}"]
                where = f"{name} [{label}] {layout} on {isa}"
                if isinstance(want, str) or isinstance(got, str):
                    if got != want:
                        failures.append(f"{where}: got {str(got)[:200]!r}, x86 {x86_isa} {str(want)[:200]!r}")
                    continue
                if [dtype_tag(g.dtype) for g in got] != want:
                    failures.append(f"{where}: dtypes {[dtype_tag(g.dtype) for g in got]} vs x86 {want}")
                    continue
                for j, g in enumerate(got):
                    r_bits = ref[f"c{i}/out/{layout}/{x86_isa}/{j}"]
                    dt = from_tag(want[j])
                    r = r_bits.view(dt)
                    if g.shape != r.shape:
                        failures.append(f"{where}: output {j} shape {g.shape} vs x86 {r.shape}")
                        continue
                    identical = np.array_equal(bits(g), r_bits)
                    if not identical and dt.kind == "f":
                        gn, rn = np.isnan(g.astype(np.float64)), np.isnan(r.astype(np.float64))
                        nan_only = np.array_equal(gn, rn) and np.array_equal(bits(g)[~gn], r_bits[~rn])
                        if nan_only:
                            stats["nan_sign_differs"] += 1
                            identical = True
                    if isa == "scalar":
                        stats["outputs"] += 1
                        stats["scalar_identical"] += identical
                        if not identical:
                            failures.append(f"{where}: output {j} differs from x86 scalar's bits "
                                            f"(max {ulp_distance(g, r, dt).max():.3g} ulp)")
                        continue
                    stats["neon_identical_to_avx2"] += identical
                    if dt.kind != "f":
                        if not identical:
                            failures.append(f"{where}: output {j} ({dt}) differs from x86")
                        continue
                    # against x86 scalar: the contract (4 ulp each from the exact value)
                    s = ref[f"c{i}/out/{layout}/scalar/{j}"].view(dt)
                    # In ulps of each value, and in ulps of the output's largest magnitude: where
                    # a value came out of cancellation (a gradient p - t), two correct paths can
                    # differ by the ulps of the terms that cancelled.
                    d_own = ulp_distance(g, s, dt)
                    s64, g64 = s.astype(np.float64), g.astype(np.float64)
                    scale = np.max(np.abs(s64[np.isfinite(s64)]), initial=0.0)
                    nmant = 7 if dt == BF16 else np.finfo(dt).nmant
                    ulp_scale = 2.0 ** (np.floor(np.log2(scale)) - nmant) if scale > 0 else np.inf
                    with np.errstate(invalid="ignore"):
                        d_scale = np.where(np.isfinite(s64) & np.isfinite(g64), np.abs(g64 - s64) / ulp_scale, d_own)
                    bad = (d_own > OWN_ULPS) & (d_scale > SCALE_ULPS)
                    stats["neon_max_ulp_vs_scalar"] = max(stats["neon_max_ulp_vs_scalar"],
                                                          float(np.max(np.where(bad, d_own, np.minimum(d_own, OWN_ULPS)),
                                                                       initial=0.0)))
                    stats["neon_max_scale_ulp"] = max(stats["neon_max_scale_ulp"], float(np.max(d_scale, initial=0.0)))
                    if j == 0 and not name.endswith("_backward"):  # a forward value: the 4-ulp contract itself
                        fw = float(d_own.max(initial=0.0))
                        if fw > stats["neon_max_ulp_forward"]:
                            stats["neon_max_ulp_forward"], stats["worst_forward"] = fw, f"{name} [{label}]"
                    if bad.any():
                        worst = float(d_own[bad].max())
                        failures.append(f"{where}: output {j} {worst:.3g} ulp from x86 scalar")
    n_vec = stats["outputs"] * len(vector)
    n = sum(len(c["layouts"]) for c in meta)
    print(f"aarch64 ISAs {isas}; {len(meta)} cases, {n} with the layouts, in {time.time() - t0:.0f} s")
    print(f"  aarch64 scalar: {stats['scalar_identical']}/{stats['outputs']} outputs bit-identical to x86 scalar "
          f"({stats['nan_sign_differs']} of all compared outputs equal but for NaN signs/payloads)")
    if vector:
        print(f"  {'/'.join(vector)}: {stats['neon_identical_to_avx2']}/{n_vec} outputs bit-identical to x86 avx2; "
              f"from x86 scalar: forward values max {stats['neon_max_ulp_forward']:.3g} ulp "
              f"({stats['worst_forward']}); all: max "
              f"{stats['neon_max_scale_ulp']:.3g} ulp of each output's largest magnitude, "
              f"every value within {OWN_ULPS:g} ulp of its own or {SCALE_ULPS:g} of that")
    print(f"  conversions: every 16-bit pattern widened, {conv_in['f32'].size} float32 patterns narrowed, "
          f"on {isas}: {'same bits as x86 scalar' if not any('conversion' in f for f in failures) else 'DIFFER'}")
    if stats["skipped_bf16"]:
        print(f"  skipped {stats['skipped_bf16']} bfloat16 cases (no ml_dtypes)")
    for f in failures[:50]:
        print("FAIL", f)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "make":
        make(out)
    elif mode == "check":
        sys.exit(check(out))
    else:
        sys.exit(f"usage: {sys.argv[0]} make|check FILE.npz")
