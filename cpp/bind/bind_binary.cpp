// Bindings of the binary cross-entropy kernels. The Python layer has validated the arguments,
// promoted the dtypes, made input and target C-contiguous, and reduced each weight to a small
// C-contiguous array with its broadcast layout (period, block); these checks guard that contract
// (a wrong layout could read out of bounds).
#include <atomic>

#include "bind/common.h"
#include "kernels/binary.h"

namespace logitops {
namespace {

template <class T>
const BinaryKernels<T>& kernels() {
  return for_dtype<T>(LO_ACTIVE_TABLE(binary_table));
}

// Elements per chunk: a fixed grain, so loss sums are bit-identical over thread counts.
constexpr int64_t kGrain = 32768;

template <class T>
BroadcastView<T> broadcast_view(const py::object& w, int64_t period, int64_t block, const char* name) {
  if (w.is_none()) return {nullptr, 1, 1};
  const py::array a = w.cast<py::array>();
  const T* p = cdata<T>(a, name);
  if (period < 1 || block < 1 || static_cast<int64_t>(a.size()) != period)
    throw py::value_error(std::string(name) + ": inconsistent broadcast layout");
  return {p, period, block};
}

bool overlaps(const void* a, const void* b, int64_t bytes) {
  const char* pa = static_cast<const char*>(a);
  const char* pb = static_cast<const char*>(b);
  return bytes > 0 && pa < pb + bytes && pb < pa + bytes;
}

// Returns (loss sum, per-element loss or None, gradient or None, status): status holds the
// BinaryStatus bits (probabilities out of range), which the Python layer turns into its
// ValueError; the outputs are then meaningless.
template <bool Logits>
py::tuple run(int op_code, const py::array& input, const py::array& target, const py::object& weight,
              int64_t weight_period, int64_t weight_block, const py::object& pos_weight, int64_t pos_period,
              int64_t pos_block, const py::object& grad_output, double grad_scale, bool store_loss,
              const py::object& out) {
  if (op_code < 0 || op_code > 3) throw py::value_error("op: unknown operation");
  const auto op = static_cast<BinaryOp>(op_code);
  if (!Logits && !pos_weight.is_none()) throw py::value_error("pos_weight: not taken by binary_cross_entropy");
  return by_float_dtype(input, "input", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const std::vector<py::ssize_t> shape(input.shape(), input.shape() + input.ndim());
    const int64_t n = static_cast<int64_t>(input.size());
    BinaryArgs<T> a{};
    a.input = cdata<T>(input, "input");
    a.target = optional_data<T>(target, n, "target");
    if (!a.target) throw py::value_error("target is required");
    a.weight = broadcast_view<T>(weight, weight_period, weight_block, "weight");
    a.pos_weight = broadcast_view<T>(pos_weight, pos_period, pos_block, "pos_weight");
    const bool grad_op = op == BinaryOp::grad_input || op == BinaryOp::grad_target;
    a.grad_output = grad_op ? optional_data<T>(grad_output, n, "grad_output") : nullptr;
    a.grad_scale = static_cast<T>(grad_scale);

    py::object loss_arr = py::none(), grad_arr = py::none();
    const bool want_loss = op == BinaryOp::loss || op == BinaryOp::loss_and_grad;
    if (want_loss && store_loss) {
      auto l = new_array<T>(shape);
      a.loss_out = l.mutable_data();
      loss_arr = l;
    }
    if (op != BinaryOp::loss) {
      py::array g = out.is_none() ? py::array(new_array<T>(shape)) : out.cast<py::array>();
      a.grad_out = out_data<T>(g, shape, "out");
      grad_arr = g;
    }
    // Writing over an argument: validate every probability before the first write, so a
    // rejected call leaves its arguments as they were.
    const int64_t bytes = n * static_cast<int64_t>(sizeof(T));
    const bool in_place = a.grad_out && (overlaps(a.grad_out, a.input, bytes) || overlaps(a.grad_out, a.target, bytes));

    const auto& k = kernels<T>();
    const auto fn = Logits ? k.logits : k.probs;
    std::atomic<int> status{0};
    double sum = 0.0;
    {
      ReleaseGil nogil;
      if (!Logits && in_place) status.store(k.check_probs(a.input, a.target, n));
      if (status.load() == 0)
        parallel_reduce(n, kGrain, 1, [&](int64_t b, int64_t e, double* partial) {
          const int s = fn(op, a, b, e, partial);
          if (s) status.fetch_or(s);
        }, &sum);
    }
    return py::make_tuple(sum, loss_arr, grad_arr, status.load());
  });
}

}  // namespace

void register_binary(py::module_& m) {
  m.def("binary_cross_entropy", &run<false>, py::arg("op"), py::arg("input"), py::arg("target"), py::arg("weight"),
        py::arg("weight_period"), py::arg("weight_block"), py::arg("pos_weight"), py::arg("pos_weight_period"),
        py::arg("pos_weight_block"), py::arg("grad_output"), py::arg("grad_scale"), py::arg("store_loss"),
        py::arg("out"));
  m.def("binary_cross_entropy_with_logits", &run<true>, py::arg("op"), py::arg("input"), py::arg("target"),
        py::arg("weight"), py::arg("weight_period"), py::arg("weight_block"), py::arg("pos_weight"),
        py::arg("pos_weight_period"), py::arg("pos_weight_block"), py::arg("grad_output"), py::arg("grad_scale"),
        py::arg("store_loss"), py::arg("out"));
}

}  // namespace logitops
