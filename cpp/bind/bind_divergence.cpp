// Bindings of the kl_div and sigmoid_focal_loss kernels. The Python layer (_divergence.py) owns
// the API: it validated the arguments and options, promoted the dtypes, made input and target
// C-contiguous, chose the divisor of "mean" ("batchmean": the first dimension), and it reduces
// the result and words the errors. The checks here guard only what the kernels rely on.
#include <atomic>

#include "bind/common.h"
#include "kernels/divergence.h"

namespace logitops {
namespace {

template <class T>
const DivergenceKernels<T>& kernels() {
  return for_dtype<T>(LO_ACTIVE_TABLE(divergence_table));
}

// Elements per chunk: a fixed grain, so loss sums are bit-identical over thread counts.
constexpr int64_t kGrain = 32768;

enum class Kind { kl_div, focal };

bool overlaps(const void* a, const void* b, int64_t bytes) {
  const char* pa = static_cast<const char*>(a);
  const char* pb = static_cast<const char*>(b);
  return bytes > 0 && pa < pb + bytes && pb < pa + bytes;
}

// Returns (loss_sum, divisor, status, losses, gradient): the sum of the element losses (loss ops
// with reduction mean/sum), the divisor given (gradients of a "mean" call are divided by it),
// the DivergenceStatus bits (a focal target outside [0, 1]: the outputs are then meaningless and
// the Python layer raises), the per-element losses (reduction "none") or None, and the gradient
// (`out` when given) or None.
template <Kind K>
py::tuple run(int op_code, int reduction_code, const py::array& input, const py::array& target, double divisor,
              bool log_target, double alpha, double gamma, const py::object& grad_output, double grad_value,
              const py::object& out) {
  const LossOp op = loss_op(op_code);
  const Reduction reduction = reduction_of(reduction_code);
  if (K == Kind::focal && op == LossOp::grad_target)
    throw py::value_error("wrt: sigmoid_focal_loss has no target gradient");
  if (K == Kind::focal && !(gamma >= 0)) throw py::value_error("gamma must be >= 0");
  return by_float_dtype(input, "input", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const std::vector<py::ssize_t> shape(input.shape(), input.shape() + input.ndim());
    const int64_t n = static_cast<int64_t>(input.size());
    DivergenceArgs<T> a{};
    a.input = cdata<T>(input, "input");
    a.target = optional_data<T>(target, n, "target");
    if (!a.target) throw py::value_error("target is required");
    a.grad_output = takes_grad_output(op) ? optional_data<T>(grad_output, n, "grad_output") : nullptr;
    a.grad_scale = reduction == Reduction::mean && divisor != 0 ? grad_value / divisor : grad_value;
    a.log_target = log_target;
    a.alpha = alpha;
    a.gamma = gamma;

    py::object loss_arr = py::none(), grad_arr = py::none();
    if (computes_loss(op) && reduction == Reduction::none) {
      auto l = new_array<T>(shape);
      a.loss_out = l.mutable_data();
      loss_arr = l;
    }
    if (computes_grad(op)) {
      py::array g = out.is_none() ? py::array(new_array<T>(shape)) : out.cast<py::array>();
      a.grad_out = out_data<T>(g, shape, "out");
      grad_arr = g;
    }
    // Writing over an argument: validate every focal target before the first write, so a
    // rejected call leaves its arguments as they were.
    const int64_t bytes = n * static_cast<int64_t>(sizeof(T));
    const bool in_place = a.grad_out && (overlaps(a.grad_out, a.input, bytes) || overlaps(a.grad_out, a.target, bytes));

    const auto& k = kernels<T>();
    const auto fn = K == Kind::kl_div ? k.kl_div : k.focal;
    std::atomic<int> status{0};
    double sum = 0.0;
    {
      ReleaseGil nogil;
      if (K == Kind::focal && in_place) status.store(k.check_unit_target(a.target, n));
      if (status.load() == 0)
        parallel_reduce(
            n, kGrain, 1,
            [&](int64_t b, int64_t e, double* partial) {
              const int s = fn(op, a, b, e, partial);
              if (s) status.fetch_or(s);
            },
            &sum);
    }
    return py::make_tuple(sum, divisor, status.load(), loss_arr, grad_arr);
  });
}

}  // namespace

void register_divergence(py::module_& m) {
  py::native_enum<DivergenceStatus>(m, "DivergenceStatus", "enum.IntFlag")
      .value("bad_target", kDivergenceBadTarget)
      .finalize();
  m.def("kl_div", &run<Kind::kl_div>, py::arg("op"), py::arg("reduction"), py::arg("input"), py::arg("target"),
        py::arg("divisor"), py::arg("log_target"), py::arg("alpha"), py::arg("gamma"), py::arg("grad_output"),
        py::arg("grad_value"), py::arg("out"));
  m.def("sigmoid_focal_loss", &run<Kind::focal>, py::arg("op"), py::arg("reduction"), py::arg("input"),
        py::arg("target"), py::arg("divisor"), py::arg("log_target"), py::arg("alpha"), py::arg("gamma"),
        py::arg("grad_output"), py::arg("grad_value"), py::arg("out"));
}

}  // namespace logitops
