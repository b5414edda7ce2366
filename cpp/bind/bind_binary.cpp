// Bindings of the binary cross-entropy kernels. The Python layer (_binary.py) owns the API: it
// validated the arguments, promoted the dtypes, made input and target C-contiguous, reduced each
// weight to a small C-contiguous array with its broadcast layout (period, block), and it reduces
// the result and words the errors. The checks here guard only what the kernels rely on (a wrong
// layout could read out of bounds).
#include <algorithm>
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

// Returns (loss_sum, divisor, status, losses, gradient): the sum of the element losses (loss ops
// with reduction mean/sum), what "mean" divides by (the number of elements; gradients of a
// "mean" call are already divided by it), the BinaryStatus bits (probabilities out of range;
// the outputs are then meaningless and the Python layer raises), the per-element losses
// (reduction "none") or None, and the gradient (`out` when given) or None.
// Which elementwise loss of the family a binding runs.
enum class Kind { probs, logits, soft_margin };

template <Kind K>
py::tuple run(int op_code, int reduction_code, const py::array& input, const py::array& target,
              const py::object& weight, int64_t weight_period, int64_t weight_block, const py::object& pos_weight,
              int64_t pos_period, int64_t pos_block, const py::object& grad_output, double grad_value,
              const py::object& out) {
  constexpr bool Logits = K == Kind::logits;
  if (!Logits && !pos_weight.is_none()) throw py::value_error("pos_weight: not taken by this loss");
  const LossOp op = loss_op(op_code);
  const Reduction reduction = reduction_of(reduction_code);
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
    a.grad_output = takes_grad_output(op) ? optional_data<T>(grad_output, n, "grad_output") : nullptr;
    const double divisor = static_cast<double>(n);
    a.grad_scale = static_cast<T>(reduction == Reduction::mean && n ? grad_value / divisor : grad_value);

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
    // Writing over an argument: validate every probability before the first write, so a
    // rejected call leaves its arguments as they were.
    const int64_t bytes = n * static_cast<int64_t>(sizeof(T));
    const bool in_place = a.grad_out && (overlaps(a.grad_out, a.input, bytes) || overlaps(a.grad_out, a.target, bytes));

    const auto& k = kernels<T>();
    const auto fn = K == Kind::logits ? k.logits : K == Kind::soft_margin ? k.soft_margin : k.probs;
    std::atomic<int> status{0};
    double sum = 0.0;
    {
      ReleaseGil nogil;
      if (K == Kind::probs && in_place) status.store(k.check_probs(a.input, a.target, n));
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

// Multilabel soft margin: input and target of one shape (..., C), rows = size / C (the class
// axis is the last; C = 0 gives rows of nan losses). Returns (loss_sum, divisor, 0, losses,
// gradient) as above, with the divisor and the losses per row: the sum of the row losses,
// the number of rows, the row losses shaped like input without its last axis ("none").
py::tuple run_multilabel(int op_code, int reduction_code, const py::array& input, const py::array& target,
                         const py::object& weight, int64_t weight_period, int64_t weight_block,
                         const py::object& grad_output, double grad_value, const py::object& out) {
  const LossOp op = loss_op(op_code);
  const Reduction reduction = reduction_of(reduction_code);
  if (input.ndim() < 1) throw py::value_error("input must have at least one dimension (the classes)");
  return by_float_dtype(input, "input", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const std::vector<py::ssize_t> shape(input.shape(), input.shape() + input.ndim());
    const std::vector<py::ssize_t> row_shape(shape.begin(), shape.end() - 1);
    const int64_t n = static_cast<int64_t>(input.size());
    const int64_t classes = static_cast<int64_t>(shape.back());
    int64_t rows = 1;
    for (const auto d : row_shape) rows *= static_cast<int64_t>(d);
    BinaryArgs<T> a{};
    a.input = cdata<T>(input, "input");
    a.target = optional_data<T>(target, n, "target");
    if (!a.target) throw py::value_error("target is required");
    a.weight = broadcast_view<T>(weight, weight_period, weight_block, "weight");
    a.pos_weight = {nullptr, 1, 1};
    a.grad_output = takes_grad_output(op) ? optional_data<T>(grad_output, rows, "grad_output") : nullptr;
    const double divisor = static_cast<double>(rows);
    const double per_class = classes ? grad_value / static_cast<double>(classes) : grad_value;
    a.grad_scale = static_cast<T>(reduction == Reduction::mean && rows ? per_class / divisor : per_class);

    py::object loss_arr = py::none(), grad_arr = py::none();
    if (computes_loss(op) && reduction == Reduction::none) {
      auto l = new_array<T>(row_shape);
      a.loss_out = l.mutable_data();
      loss_arr = l;
    }
    if (computes_grad(op)) {
      py::array g = out.is_none() ? py::array(new_array<T>(shape)) : out.cast<py::array>();
      a.grad_out = out_data<T>(g, shape, "out");
      grad_arr = g;
    }
    const auto fn = kernels<T>().multilabel;
    double sum = 0.0;
    {
      ReleaseGil nogil;
      const int64_t grain = classes ? std::max<int64_t>(1, kGrain / classes) : kGrain;
      parallel_reduce(
          rows, grain, 1, [&](int64_t b, int64_t e, double* partial) { fn(op, a, classes, b, e, partial); }, &sum);
    }
    return py::make_tuple(sum, divisor, 0, loss_arr, grad_arr);
  });
}

template <Kind K>
void def_loss(py::module_& m, const char* name) {
  m.def(name, &run<K>, py::arg("op"), py::arg("reduction"), py::arg("input"), py::arg("target"), py::arg("weight"),
        py::arg("weight_period"), py::arg("weight_block"), py::arg("pos_weight"), py::arg("pos_weight_period"),
        py::arg("pos_weight_block"), py::arg("grad_output"), py::arg("grad_value"), py::arg("out"));
}

}  // namespace

void register_binary(py::module_& m) {
  py::native_enum<BinaryStatus>(m, "BinaryStatus", "enum.IntFlag")
      .value("bad_input", kBinaryBadInput)
      .value("bad_target", kBinaryBadTarget)
      .finalize();
  def_loss<Kind::probs>(m, "binary_cross_entropy");
  def_loss<Kind::logits>(m, "binary_cross_entropy_with_logits");
  def_loss<Kind::soft_margin>(m, "soft_margin_loss");
  m.def("multilabel_soft_margin_loss", &run_multilabel, py::arg("op"), py::arg("reduction"), py::arg("input"),
        py::arg("target"), py::arg("weight"), py::arg("weight_period"), py::arg("weight_block"), py::arg("grad_output"),
        py::arg("grad_value"), py::arg("out"));
}

}  // namespace logitops
