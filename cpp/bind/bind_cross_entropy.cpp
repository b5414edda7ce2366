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

#include "bind/common.h"
#include "kernels/cross_entropy.h"

namespace logitops {
namespace {

template <class T>
const CrossEntropyKernels<T>& kernels() {
  return for_dtype<T>(LO_ACTIVE_TABLE(cross_entropy_table));
}

constexpr int64_t kCheckGrain = 65536;  // targets per chunk of the check

// Returns (loss_sum, divisor, bad, losses, gradient):
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
              const py::object& out, double z_loss, double softcap) {
  const LossOp op = loss_op(op_code);
  const Reduction reduction = reduction_of(reduction_code);
  if (Nll && (z_loss != 0.0 || softcap != 0.0)) throw py::value_error("nll_loss: no z_loss or softcap");
  if (!std::isfinite(z_loss)) throw py::value_error("z_loss must be finite");
  if (!(softcap >= 0.0) || !std::isfinite(softcap)) throw py::value_error("softcap must be 0 (off) or positive");
  if (softcap != 0.0 && inner != 1) throw py::value_error("softcap: rows only (inner == 1)");
  return by_float_dtype(input, "input", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    int64_t samples = 0, n = 0;
    if (outer < 0 || classes < 0 || inner < 0 || __builtin_mul_overflow(outer, inner, &samples) ||
        __builtin_mul_overflow(samples, classes, &n))
      throw py::value_error("input: bad layout");
    CeArgs<T> a{};
    a.input = cdata<T>(input, "input");
    if (static_cast<int64_t>(input.size()) != n) throw py::value_error("input has the wrong size");
    a.target = optional_data<int64_t>(target, samples, "target");
    a.probs = optional_data<T>(probs, n, "target");
    if (!a.target == !a.probs || (Nll && a.probs)) throw py::value_error("target: class indices or probabilities");
    a.weight = optional_data<T>(weight, classes, "weight");
    a.outer = outer;
    a.classes = classes;
    a.inner = inner;
    a.ignore_index = ignore_index;
    a.label_smoothing = Nll ? 0.0 : label_smoothing;
    a.z_loss = z_loss;
    a.softcap = softcap;
    const auto& k = kernels<T>();
    a.weight_total = a.weight ? k.class_weight_sum(a.weight, classes) : static_cast<double>(classes);
    a.grad_output = takes_grad_output(op) ? optional_data<T>(grad_output, samples, "grad_output") : nullptr;

    py::object loss_arr = py::none(), grad_arr = py::none();
    if (computes_loss(op) && reduction == Reduction::none) {
      auto l = new_array<T>({static_cast<py::ssize_t>(samples)});
      a.loss_out = l.mutable_data();
      loss_arr = l;
    }
    if (computes_grad(op)) {
      const std::vector<py::ssize_t> shape(input.shape(), input.shape() + input.ndim());
      py::array g = out.is_none() ? py::array(new_array<T>(shape)) : out.cast<py::array>();
      a.grad_out = out_data<T>(g, shape, "out");
      grad_arr = g;
    }

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
      } else if (bad.load() == kNone) {
        a.grad_scale = reduction == Reduction::mean ? grad_value / divisor[0] : grad_value;
        a.z_grad_scale = reduction == Reduction::mean ? grad_value / divisor[1] : grad_value;
        const auto fn = Nll ? k.nll_loss : k.cross_entropy;
        // A softcap costs a tanh per element besides the exp.
        const int64_t work = softcap != 0.0 ? 2 * unit_work : unit_work;
        parallel_reduce(
            units, grain_for(work), parts, [&](int64_t b, int64_t e, double* partial) { fn(op, a, b, e, partial); },
            sum);
      }
    }
    const int64_t first_bad = bad.load() == kNone ? -1 : bad.load();
    return py::make_tuple(sum[0], divisor[0], first_bad, loss_arr, grad_arr, sum[1], divisor[1]);
  });
}

template <bool Nll>
void def_loss(py::module_& m, const char* name) {
  m.def(name, &run<Nll>, py::arg("op"), py::arg("reduction"), py::arg("input"), py::arg("target"), py::arg("probs"),
        py::arg("weight"), py::arg("outer"), py::arg("classes"), py::arg("inner"), py::arg("ignore_index"),
        py::arg("label_smoothing"), py::arg("grad_output"), py::arg("grad_value"), py::arg("out"),
        py::arg("z_loss") = 0.0, py::arg("softcap") = 0.0);
}

}  // namespace

void register_cross_entropy(py::module_& m) {
  def_loss<false>(m, "cross_entropy");
  def_loss<true>(m, "nll_loss");
}

}  // namespace logitops
