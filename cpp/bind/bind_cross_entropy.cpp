// Bindings of the cross-entropy and NLL kernels. The Python layer has validated the arguments,
// laid the input out as C-contiguous (outer, C, inner) memory, converted class targets to int64
// and cast weight and probability targets to the input's dtype; these checks guard that contract
// (a wrong size could read out of bounds).
//
// One call: check the class targets and sum their weights (the divisor of "mean", needed before
// any gradient is scaled), then run the kernel over fixed chunks, all without the GIL. A bad
// target is reported after the GIL is back, before anything was written.
#include <atomic>
#include <limits>
#include <string>

#include "bind/common.h"
#include "kernels/cross_entropy.h"

namespace logitops {
namespace {

template <class T>
const CrossEntropyKernels<T>& kernels() {
  return for_dtype<T>(LO_ACTIVE_TABLE(cross_entropy_table));
}

constexpr int64_t kCheckGrain = 65536;  // targets per chunk of the check
enum Reduction : int { kNone = 0, kMean = 1, kSum = 2 };

// Returns (loss, gradient): the loss as a float ("mean", "sum"), a flat per-sample array ("none")
// or None (gradient-only ops); the gradient shaped like input, or None.
template <bool Nll>
py::tuple run(int op_code, const py::array& input, const py::object& target, const py::object& probs,
              const py::object& weight, int64_t outer, int64_t classes, int64_t inner, int64_t ignore_index,
              double label_smoothing, int reduction, const py::object& grad_output, double grad_value,
              const py::object& out) {
  if (op_code < 0 || op_code > 3) throw py::value_error("op: unknown operation");
  if (reduction < kNone || reduction > kSum) throw py::value_error("reduction: unknown code");
  const auto op = static_cast<CeOp>(op_code);
  return by_float_dtype(input, "input", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    if (outer < 0 || classes < 0 || inner < 0) throw py::value_error("input: bad layout");
    const int64_t samples = outer * inner, n = samples * classes;
    CeArgs<T> a{};
    a.input = cdata<T>(input, "input");
    if (static_cast<int64_t>(input.size()) != n) throw py::value_error("input has the wrong size");
    a.target = optional_data<int64_t>(target, samples, "target");
    a.probs = optional_data<T>(probs, n, "target");
    if (!a.target == !a.probs) throw py::value_error("target: give class indices or probabilities");
    if (Nll && a.probs) throw py::value_error("target: nll_loss takes class indices");
    if (op == CeOp::grad_target && !a.probs) throw py::value_error("wrt='target' needs probability targets");
    a.weight = optional_data<T>(weight, classes, "weight");
    a.outer = outer;
    a.classes = classes;
    a.inner = inner;
    a.ignore_index = ignore_index;
    a.label_smoothing = Nll ? 0.0 : label_smoothing;
    double wt = static_cast<double>(classes);
    if (a.weight) {
      wt = 0.0;
      for (int64_t c = 0; c < classes; ++c) wt += static_cast<double>(a.weight[c]);
    }
    a.weight_total = wt;
    const bool grad_op = op != CeOp::loss;
    const bool want_loss = op == CeOp::loss || op == CeOp::loss_and_grad;
    a.grad_output = (grad_op && op != CeOp::loss_and_grad) ? optional_data<T>(grad_output, samples, "grad_output") : nullptr;

    py::object loss_arr = py::none(), grad_arr = py::none();
    if (want_loss && reduction == kNone) {
      auto l = new_array<T>({static_cast<py::ssize_t>(samples)});
      a.loss_out = l.mutable_data();
      loss_arr = l;
    }
    if (grad_op) {
      const std::vector<py::ssize_t> shape(input.shape(), input.shape() + input.ndim());
      py::array g = out.is_none() ? py::array(new_array<T>(shape)) : out.cast<py::array>();
      a.grad_out = out_data<T>(g, shape, "out");
      grad_arr = g;
    }

    const auto& k = kernels<T>();
    const int64_t units = ce_units(outer, classes, inner, static_cast<int64_t>(sizeof(T)));
    const int64_t lanes = inner == 1 ? 1 : ce_lane_block(classes, inner, static_cast<int64_t>(sizeof(T)));
    const int64_t unit_work = Nll ? lanes * (grad_op ? classes + 1 : 1) + 16 : lanes * classes + 16;
    std::atomic<int64_t> bad{std::numeric_limits<int64_t>::max()};
    // Probability targets: the number of samples; torch gives nan for an input without elements.
    double divisor = n == 0 ? 0.0 : static_cast<double>(samples), sum = 0.0;
    {
      ReleaseGil nogil;
      if (a.target) {
        parallel_reduce(samples, kCheckGrain, 1, [&](int64_t b, int64_t e, double* partial) {
          const int64_t i = k.check_targets(a, b, e, partial);
          if (i < 0) return;
          int64_t cur = bad.load();
          while (i < cur && !bad.compare_exchange_weak(cur, i)) {
          }
        }, &divisor);
      }
      if (bad.load() == std::numeric_limits<int64_t>::max()) {
        a.grad_scale = reduction == kNone ? 1.0 : reduction == kMean ? grad_value / divisor : grad_value;
        const auto fn = Nll ? k.nll_loss : k.cross_entropy;
        parallel_reduce(units, grain_for(unit_work), 1, [&](int64_t b, int64_t e, double* partial) {
          fn(op, a, b, e, partial);
        }, &sum);
      }
    }
    if (bad.load() != std::numeric_limits<int64_t>::max())
      throw py::index_error("Target " + std::to_string(a.target[bad.load()]) + " is out of bounds.");
    py::object loss = loss_arr;
    if (want_loss && reduction != kNone) loss = py::float_(reduction == kMean ? sum / divisor : sum);
    return py::make_tuple(loss, grad_arr);
  });
}

}  // namespace

void register_cross_entropy(py::module_& m) {
  m.def("cross_entropy", &run<false>, py::arg("op"), py::arg("input"), py::arg("target"), py::arg("probs"),
        py::arg("weight"), py::arg("outer"), py::arg("classes"), py::arg("inner"), py::arg("ignore_index"),
        py::arg("label_smoothing"), py::arg("reduction"), py::arg("grad_output"), py::arg("grad_value"),
        py::arg("out"));
  m.def("nll_loss", &run<true>, py::arg("op"), py::arg("input"), py::arg("target"), py::arg("probs"),
        py::arg("weight"), py::arg("outer"), py::arg("classes"), py::arg("inner"), py::arg("ignore_index"),
        py::arg("label_smoothing"), py::arg("reduction"), py::arg("grad_output"), py::arg("grad_value"),
        py::arg("out"));
}

}  // namespace logitops
