// Bindings of the symmetric cross-entropy kernels. The Python layer (_symmetric_ce.py) checked
// the options, made input a C-contiguous (N, C) array of one float dtype and the class targets
// int64 (N,); it reduces the result and words the errors. One call without the GIL: the target
// check (a bad target stops the call before anything is written), then the rows over fixed
// chunks.
#include <atomic>
#include <limits>

#include "bind/common.h"
#include "kernels/symmetric_ce.h"

namespace logitops {
namespace {

template <class T>
const SymmetricCeKernels<T>& kernels() {
  return for_dtype<T>(LO_ACTIVE_TABLE(symmetric_ce_table));
}

// (loss_sum, divisor = N, first bad target's row or -1, losses for "none" or None, gradient or None).
py::tuple run(int op_code, int reduction_code, const py::array& input, const py::array& target, double alpha,
              double beta, double k, double prob_eps, const py::object& grad_output, double grad_value,
              const py::object& out) {
  const LossOp op = loss_op(op_code);
  const Reduction reduction = reduction_of(reduction_code);
  if (op == LossOp::grad_target) throw py::value_error("op: symmetric cross-entropy has no target gradient");
  return by_float_dtype(input, "input", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    SceArgs<T> a{};
    a.input = rows_data<T>(input, "input");
    a.rows = dim(input, 0);
    a.classes = dim(input, 1);
    a.target = optional_data<int64_t>(target, a.rows, "target");
    if (!a.target) throw py::value_error("target: class indices required");
    a.alpha = alpha;
    a.beta = beta;
    a.k = k;
    a.prob_eps = prob_eps;
    a.grad_output = takes_grad_output(op) ? optional_data<T>(grad_output, a.rows, "grad_output") : nullptr;
    py::object loss_arr = py::none(), grad_arr = py::none();
    if (computes_loss(op) && reduction == Reduction::none) {
      auto l = new_array<T>({static_cast<py::ssize_t>(a.rows)});
      a.loss_out = l.mutable_data();
      loss_arr = l;
    }
    if (computes_grad(op)) {
      const std::vector<py::ssize_t> shape{input.shape(0), input.shape(1)};
      py::array g = out.is_none() ? py::array(new_array<T>(shape)) : out.cast<py::array>();
      a.grad_out = out_data<T>(g, shape, "out");
      grad_arr = g;
    }
    const auto& kern = kernels<T>();
    constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
    std::atomic<int64_t> bad{kNone};
    const double divisor = static_cast<double>(a.rows);
    double sum = 0.0;
    {
      ReleaseGil nogil;
      parallel_for(a.rows, 65536, [&](int64_t b, int64_t e) {
        const int64_t i = kern.check_targets(a, b, e);
        if (i < 0) return;
        int64_t cur = bad.load();
        while (i < cur && !bad.compare_exchange_weak(cur, i)) {
        }
      });
      if (bad.load() == kNone && a.rows > 0) {
        a.grad_scale = reduction == Reduction::mean ? grad_value / divisor : grad_value;
        parallel_reduce(
            a.rows, grain_for(a.classes + 16), 1,
            [&](int64_t b, int64_t e, double* partial) { kern.rows(op, a, b, e, partial); }, &sum);
      }
    }
    const int64_t first_bad = bad.load() == kNone ? -1 : bad.load();
    return py::make_tuple(sum, divisor, first_bad, loss_arr, grad_arr);
  });
}

}  // namespace

void register_symmetric_ce(py::module_& m) {
  m.def("symmetric_cross_entropy", &run, py::arg("op"), py::arg("reduction"), py::arg("input"), py::arg("target"),
        py::arg("alpha"), py::arg("beta"), py::arg("k"), py::arg("prob_eps"), py::arg("grad_output"),
        py::arg("grad_value"), py::arg("out"));
}

}  // namespace logitops
