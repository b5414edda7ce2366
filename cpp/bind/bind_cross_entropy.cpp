// Bindings of the cross-entropy and NLL kernels. The Python layer (_cross_entropy.py) owns the
// API: it validated the arguments, laid the input out as C-contiguous (outer, C, inner) memory,
// converted class targets to int64, cast weight and probability targets to the input's dtype,
// and it reduces the result and words the errors. What is checked here is only what the kernels
// rely on for memory safety (sizes, dtypes, contiguity, alignment).
//
// One call, all without the GIL: check the class targets and sum their weights (the divisor of
// "mean", needed before any gradient is scaled), then run the kernel over fixed chunks. A bad
// target stops the call before anything is written; its sample index is returned.
#include <atomic>
#include <cmath>
#include <limits>
#include <optional>

#include "bind/common.h"
#include "bind/low_precision.h"
#include "kernels/cross_entropy.h"

namespace logitops {
namespace {

template <class T>
const CrossEntropyKernels<T>& kernels() {
  return for_dtype<T>(LO_ACTIVE_TABLE(cross_entropy_table));
}

constexpr int64_t kCheckGrain = 65536;  // targets per chunk of the check

// A float16 / bfloat16 call (bind/low_precision.h): the 16-bit arrays, read and written
// through float32 blocks around the float32 kernel.
struct LowCe {
  const uint16_t* input = nullptr;
  const uint16_t* probs = nullptr;
  const uint16_t* grad_output = nullptr;
  uint16_t* loss_out = nullptr;
  uint16_t* grad_out = nullptr;
};

using CeUnits = void (*)(LossOp, const CeArgs<float>&, int64_t, int64_t, double*);

// Units [begin, end) of a 16-bit call: each block of rows (inner == 1) or each lane block
// (inner > 1, gathered into a (C, lanes) block) becomes a problem of its own for the float32
// kernel, `a` with its arrays replaced by the block's buffers; its gradient is written over
// its input buffer (the kernels allow it), then rounded into the output.
// Rows the kernels take in 16 bits themselves (`rows16`, the call's table for a cross_entropy, null
// for nll_loss: cross_entropy_low_rows) get only their small float32 arrays (upstream gradients,
// losses) from blocks.
void low_ce_units(CeUnits fn, const CrossEntropyTable* rows16, LowFormat fmt, LossOp op, const CeArgs<float>& a,
                  const LowCe& lp, const LowIo& io, int64_t begin, int64_t end, double* partial) {
  const int64_t C = a.classes, inner = a.inner;
  CeArgs<float> s = a;
  if (inner == 1) {
    const int64_t R = low_rows_per_block(C);
    const bool in_kernel = rows16 && rows16->takes_low_rows(op, a);
    for (int64_t r0 = begin; r0 < end; r0 += R) {
      const int64_t rows = std::min(R, end - r0), n = rows * C;
      s.outer = rows;
      if (in_kernel) {
        s.target = a.target + r0;
        s.grad_output = lp.grad_output ? io.read(2, lp.grad_output + r0, rows) : nullptr;
        s.loss_out = lp.loss_out ? block_buffer(3, rows) : nullptr;
        rows16->cross_entropy_low_rows(fmt, op, s, lp.input + r0 * C, lp.grad_out ? lp.grad_out + r0 * C : nullptr, 0,
                                       rows, partial);
        if (lp.loss_out) io.write(s.loss_out, rows, lp.loss_out + r0);
        continue;
      }
      s.input = io.read(0, lp.input + r0 * C, n);
      s.probs = lp.probs ? io.read(1, lp.probs + r0 * C, n) : nullptr;
      s.target = a.target ? a.target + r0 : nullptr;
      s.grad_output = lp.grad_output ? io.read(2, lp.grad_output + r0, rows) : nullptr;
      s.loss_out = lp.loss_out ? block_buffer(3, rows) : nullptr;
      s.grad_out = lp.grad_out ? const_cast<float*>(s.input) : nullptr;
      fn(op, s, 0, rows, partial);
      if (lp.loss_out) io.write(s.loss_out, rows, lp.loss_out + r0);
      if (lp.grad_out) io.write(s.grad_out, n, lp.grad_out + r0 * C);
    }
    return;
  }
  // The units of the float32 problem: a lane block is also one unit of its (C, lanes) block.
  const int64_t B = ce_lane_block(C, inner, sizeof(float)), nb = (inner + B - 1) / B;
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / nb, i0 = (u % nb) * B, nl = std::min(B, inner - i0);
    const int64_t off = n * C * inner + i0, s0 = n * inner + i0;
    s.outer = 1;
    s.inner = nl;
    s.input = io.read_rows(0, lp.input + off, C, nl, inner);
    s.probs = lp.probs ? io.read_rows(1, lp.probs + off, C, nl, inner) : nullptr;
    s.target = a.target ? a.target + s0 : nullptr;
    s.grad_output = lp.grad_output ? io.read(2, lp.grad_output + s0, nl) : nullptr;
    s.loss_out = lp.loss_out ? block_buffer(3, nl) : nullptr;
    s.grad_out = lp.grad_out ? const_cast<float*>(s.input) : nullptr;
    fn(op, s, 0, 1, partial);
    if (lp.loss_out) io.write(s.loss_out, nl, lp.loss_out + s0);
    if (lp.grad_out) io.write_rows(s.grad_out, C, nl, inner, lp.grad_out + off);
  }
}

// Returns (loss_sum, divisor, bad, losses, gradient) and, with heads_result, (z_sum, z_divisor):
//   loss_sum  the sum of the per-sample losses (loss ops with reduction mean/sum), else 0;
//   divisor   what "mean" divides by: sum of w[y] over non-ignored class targets, or the number
//             of samples for probability targets (0 for an input without elements); gradients
//             of a "mean" call are already divided by it;
//   bad       the flat index of the first class target outside [0, C) that is not ignore_index,
//             or -1 (nothing was computed then);
//   losses    a flat per-sample array for reduction "none", else None;
//   gradient  shaped like input (`out` when given), or None for the loss op;
//   z_sum     with z_loss != 0, the sum of the per-sample z parts z lse^2 (reductions mean/sum;
//             not in loss_sum), else 0;
//   z_divisor with z_loss != 0, what the z part's "mean" divides by: the number of non-ignored
//             samples (gradients already divided by it), else 0.
// z_loss and softcap (0 = off; softcap rows only, inner == 1): cross_entropy.h, "LLM heads".
template <bool Nll>
py::tuple run(int op_code, int reduction_code, const py::array& input, const py::object& target,
              const py::object& probs, const py::object& weight, int64_t outer, int64_t classes, int64_t inner,
              int64_t ignore_index, double label_smoothing, const py::object& grad_output, double grad_value,
              const py::object& out, double z_loss, double softcap, bool heads_result) {
  const LossOp op = loss_op(op_code);
  const Reduction reduction = reduction_of(reduction_code);
  if (Nll && (z_loss != 0.0 || softcap != 0.0)) throw py::value_error("nll_loss: no z_loss or softcap");
  if (!std::isfinite(z_loss)) throw py::value_error("z_loss must be finite");
  if (!(softcap >= 0.0) || !std::isfinite(softcap)) throw py::value_error("softcap must be 0 (off) or positive");
  if (softcap != 0.0 && inner != 1) throw py::value_error("softcap: rows only (inner == 1)");
  return by_storage(input, "input", [&](auto tag) -> py::tuple {
    using St = decltype(tag);
    using T = compute_t<St>;  // float for the 16-bit formats, whose arrays live in lp
    constexpr bool low = is_low_v<St>;
    int64_t samples = 0, n = 0;
    if (outer < 0 || classes < 0 || inner < 0 || __builtin_mul_overflow(outer, inner, &samples) ||
        __builtin_mul_overflow(samples, classes, &n))
      throw py::value_error("input: bad layout");
    CeArgs<T> a{};
    LowCe lp{};
    const py::dtype fmt = input.dtype();
    if constexpr (low) {
      lp.input = low_cdata(input, fmt, "input");
      lp.probs = optional_low(probs, n, fmt, "target");
    } else {
      a.input = cdata<T>(input, "input");
      a.probs = optional_data<T>(probs, n, "target");
    }
    const bool has_probs = low ? lp.probs != nullptr : a.probs != nullptr;
    if (static_cast<int64_t>(input.size()) != n) throw py::value_error("input has the wrong size");
    a.target = optional_data<int64_t>(target, samples, "target");
    if (!a.target == !has_probs || (Nll && has_probs)) throw py::value_error("target: class indices or probabilities");
    a.weight = optional_data<T>(weight, classes, "weight");  // float32 for the 16-bit formats
    a.outer = outer;
    a.classes = classes;
    a.inner = inner;
    a.ignore_index = ignore_index;
    a.label_smoothing = Nll ? 0.0 : label_smoothing;
    a.z_loss = z_loss;
    a.softcap = softcap;
    const auto& k = kernels<T>();
    a.weight_total = a.weight ? k.class_weight_sum(a.weight, classes) : static_cast<double>(classes);
    if (takes_grad_output(op)) {
      if constexpr (low)
        lp.grad_output = optional_low(grad_output, samples, fmt, "grad_output");
      else
        a.grad_output = optional_data<T>(grad_output, samples, "grad_output");
    }

    py::object loss_arr = py::none(), grad_arr = py::none();
    if (computes_loss(op) && reduction == Reduction::none) {
      py::array l = new_result<St>({static_cast<py::ssize_t>(samples)}, input);
      if constexpr (low)
        lp.loss_out = static_cast<uint16_t*>(l.mutable_data());
      else
        a.loss_out = static_cast<T*>(l.mutable_data());
      loss_arr = l;
    }
    if (computes_grad(op)) {
      const std::vector<py::ssize_t> shape(input.shape(), input.shape() + input.ndim());
      py::array g = out.is_none() ? new_result<St>(shape, input) : out.cast<py::array>();
      if constexpr (low)
        lp.grad_out = low_out(g, shape, fmt, "out");
      else
        a.grad_out = out_data<T>(g, shape, "out");
      grad_arr = g;
    }
    std::optional<LowIo> io;
    if constexpr (low) io.emplace(St::format);

    const int64_t units = ce_units(outer, classes, inner, static_cast<int64_t>(sizeof(T)));
    const int64_t lanes = inner == 1 ? 1 : ce_lane_block(classes, inner, static_cast<int64_t>(sizeof(T)));
    const int64_t unit_work = Nll ? lanes * (computes_grad(op) ? classes + 1 : 1) + 16 : lanes * classes + 16;
    constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
    std::atomic<int64_t> bad{kNone};
    const bool zl = z_loss != 0.0;
    const int parts = zl ? 2 : 1;  // [1]: the z part (cross_entropy.h)
    double divisor[2] = {n == 0 ? 0.0 : static_cast<double>(samples), 0.0}, sum[2] = {0.0, 0.0};
    if (zl) divisor[1] = divisor[0];
    {
      ReleaseGil nogil;
      if (a.target) {
        divisor[1] = 0.0;
        parallel_reduce(
            samples, kCheckGrain, parts,
            [&](int64_t b, int64_t e, double* partial) {
              const int64_t i = k.check_targets(a, b, e, partial);
              if (i < 0) return;
              int64_t cur = bad.load();
              while (i < cur && !bad.compare_exchange_weak(cur, i)) {
              }
            },
            divisor);
      }
      if (bad.load() == kNone && n == 0) {
        // No logits: nothing to compute, however many samples the shape counts (a zero-size
        // (2**40, 0, 2**20) input has 2**60 of them; looping over them would never end).
        if (a.loss_out) std::fill(a.loss_out, a.loss_out + samples, T(0));
        if (lp.loss_out) std::fill(lp.loss_out, lp.loss_out + samples, uint16_t{0});  // +0 in both formats
      } else if (bad.load() == kNone) {
        a.grad_scale = reduction == Reduction::mean ? grad_value / divisor[0] : grad_value;
        a.z_grad_scale = reduction == Reduction::mean ? grad_value / divisor[1] : grad_value;
        const auto fn = Nll ? k.nll_loss : k.cross_entropy;
        const CrossEntropyTable* rows16 = Nll ? nullptr : &LO_ACTIVE_TABLE(cross_entropy_table);
        // A softcap costs a tanh per element besides the exp.
        const int64_t work = softcap != 0.0 ? 2 * unit_work : unit_work;
        parallel_reduce(
            units, grain_for(work), parts,
            [&](int64_t b, int64_t e, double* partial) {
              if constexpr (low)
                low_ce_units(fn, rows16, St::format, op, a, lp, *io, b, e, partial);
              else
                fn(op, a, b, e, partial);
            },
            sum);
      }
    }
    const int64_t first_bad = bad.load() == kNone ? -1 : bad.load();
    if (!heads_result) return py::make_tuple(sum[0], divisor[0], first_bad, loss_arr, grad_arr);
    return py::make_tuple(sum[0], divisor[0], first_bad, loss_arr, grad_arr, sum[1], divisor[1]);
  });
}

// The usual call's binding (no heads: the five results) and, for cross_entropy, the heads'
// one (z_loss, softcap; seven results). Two bindings keep the usual call's argument parsing
// and result tuple what they were before the heads (callgrind (8, 4): +15% with defaults).
template <bool Nll>
void def_loss(py::module_& m, const char* name) {
  m.def(
      name,
      [](int op, int reduction, const py::array& input, const py::object& target, const py::object& probs,
         const py::object& weight, int64_t outer, int64_t classes, int64_t inner, int64_t ignore_index,
         double label_smoothing, const py::object& grad_output, double grad_value, const py::object& out) {
        return run<Nll>(op, reduction, input, target, probs, weight, outer, classes, inner, ignore_index,
                        label_smoothing, grad_output, grad_value, out, 0.0, 0.0, false);
      },
      py::arg("op"), py::arg("reduction"), py::arg("input"), py::arg("target"), py::arg("probs"), py::arg("weight"),
      py::arg("outer"), py::arg("classes"), py::arg("inner"), py::arg("ignore_index"), py::arg("label_smoothing"),
      py::arg("grad_output"), py::arg("grad_value"), py::arg("out"));
}

void def_heads(py::module_& m) {
  m.def(
      "cross_entropy_heads",
      [](int op, int reduction, const py::array& input, const py::object& target, const py::object& probs,
         const py::object& weight, int64_t outer, int64_t classes, int64_t inner, int64_t ignore_index,
         double label_smoothing, const py::object& grad_output, double grad_value, const py::object& out, double z_loss,
         double softcap) {
        return run<false>(op, reduction, input, target, probs, weight, outer, classes, inner, ignore_index,
                          label_smoothing, grad_output, grad_value, out, z_loss, softcap, true);
      },
      py::arg("op"), py::arg("reduction"), py::arg("input"), py::arg("target"), py::arg("probs"), py::arg("weight"),
      py::arg("outer"), py::arg("classes"), py::arg("inner"), py::arg("ignore_index"), py::arg("label_smoothing"),
      py::arg("grad_output"), py::arg("grad_value"), py::arg("out"), py::arg("z_loss"), py::arg("softcap"));
}

}  // namespace

void register_cross_entropy(py::module_& m) {
  def_loss<false>(m, "cross_entropy");
  def_loss<true>(m, "nll_loss");
  def_heads(m);
}

}  // namespace logitops
