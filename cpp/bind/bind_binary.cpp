// Bindings of the binary cross-entropy kernels. The Python layer (_binary.py) owns the API: it
// validated the arguments, promoted the dtypes, made input and target C-contiguous, reduced each
// weight to a small C-contiguous array with its broadcast layout (period, block), and it reduces
// the result and words the errors. The checks here guard only what the kernels rely on (a wrong
// layout could read out of bounds).
#include <algorithm>
#include <atomic>
#include <optional>

#include "bind/common.h"
#include "bind/low_precision.h"
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

// A float16 / bfloat16 call (bind/low_precision.h): its 16-bit arrays; weights come as float32.
struct LowBinary {
  const uint16_t* input = nullptr;
  const uint16_t* target = nullptr;
  const uint16_t* grad_output = nullptr;
  uint16_t* loss_out = nullptr;
  uint16_t* grad_out = nullptr;
};

using BinaryFn = int (*)(LossOp, const BinaryArgs<float>&, int64_t, int64_t, double*);

// Elements [begin, end) of a 16-bit call, kLowBlock at a time: the float32 kernel runs on
// `a` with its arrays replaced by the block's buffers, rebased so that the kernel's element
// numbers (which place the broadcast weights) stay those of the whole array.
int low_binary_range(BinaryFn fn, LossOp op, const BinaryArgs<float>& a, const LowBinary& lp, const LowIo& io,
                     int64_t begin, int64_t end, double* partial) {
  BinaryArgs<float> s = a;
  int status = 0;
  for (int64_t i = begin; i < end; i += kLowBlock) {
    const int64_t m = std::min(kLowBlock, end - i);
    s.input = rebase(io.read(0, lp.input + i, m), i);
    s.target = rebase(io.read(1, lp.target + i, m), i);
    s.grad_output = lp.grad_output ? rebase(io.read(2, lp.grad_output + i, m), i) : nullptr;
    float* loss = lp.loss_out ? block_buffer(3, m) : nullptr;
    float* grad = lp.grad_out ? block_buffer(4, m) : nullptr;
    s.loss_out = loss ? rebase(loss, i) : nullptr;
    s.grad_out = grad ? rebase(grad, i) : nullptr;
    status |= fn(op, s, i, i + m, partial);
    if (loss) io.write(loss, m, lp.loss_out + i);
    if (grad) io.write(grad, m, lp.grad_out + i);
  }
  return status;
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
  return by_storage(input, "input", [&](auto tag) -> py::tuple {
    using St = decltype(tag);
    using T = compute_t<St>;  // float for the 16-bit formats, whose arrays live in lp
    constexpr bool low = is_low_v<St>;
    const std::vector<py::ssize_t> shape(input.shape(), input.shape() + input.ndim());
    const int64_t n = static_cast<int64_t>(input.size());
    const py::dtype fmt = input.dtype();
    BinaryArgs<T> a{};
    LowBinary lp{};
    if constexpr (low) {
      lp.input = low_cdata(input, fmt, "input");
      lp.target = optional_low(target, n, fmt, "target");
      if (!lp.target) throw py::value_error("target is required");
    } else {
      a.input = cdata<T>(input, "input");
      a.target = optional_data<T>(target, n, "target");
      if (!a.target) throw py::value_error("target is required");
    }
    a.weight = broadcast_view<T>(weight, weight_period, weight_block, "weight");  // float32 for 16-bit calls
    a.pos_weight = broadcast_view<T>(pos_weight, pos_period, pos_block, "pos_weight");
    if (takes_grad_output(op)) {
      if constexpr (low)
        lp.grad_output = optional_low(grad_output, n, fmt, "grad_output");
      else
        a.grad_output = optional_data<T>(grad_output, n, "grad_output");
    }
    const double divisor = static_cast<double>(n);
    a.grad_scale = static_cast<T>(reduction == Reduction::mean && n ? grad_value / divisor : grad_value);

    py::object loss_arr = py::none(), grad_arr = py::none();
    if (computes_loss(op) && reduction == Reduction::none) {
      py::array l = new_result<St>(shape, input);
      if constexpr (low)
        lp.loss_out = static_cast<uint16_t*>(l.mutable_data());
      else
        a.loss_out = static_cast<T*>(l.mutable_data());
      loss_arr = l;
    }
    if (computes_grad(op)) {
      py::array g = out.is_none() ? new_result<St>(shape, input) : out.cast<py::array>();
      if constexpr (low)
        lp.grad_out = low_out(g, shape, fmt, "out");
      else
        a.grad_out = out_data<T>(g, shape, "out");
      grad_arr = g;
    }
    // Writing over an argument: validate every probability before the first write, so a
    // rejected call leaves its arguments as they were.
    const int64_t bytes = n * static_cast<int64_t>(low ? sizeof(uint16_t) : sizeof(T));
    const void* written = low ? static_cast<const void*>(lp.grad_out) : static_cast<const void*>(a.grad_out);
    const void* read_in = low ? static_cast<const void*>(lp.input) : static_cast<const void*>(a.input);
    const void* read_t = low ? static_cast<const void*>(lp.target) : static_cast<const void*>(a.target);
    const bool in_place = written && (overlaps(written, read_in, bytes) || overlaps(written, read_t, bytes));

    const auto& k = kernels<T>();
    const auto fn = K == Kind::logits ? k.logits : K == Kind::soft_margin ? k.soft_margin : k.probs;
    std::atomic<int> status{0};
    double sum = 0.0;
    std::optional<LowIo> io;
    if constexpr (low) io.emplace(St::format);
    {
      ReleaseGil nogil;
      if (K == Kind::probs && in_place) {
        if constexpr (low) {
          int st = 0;
          for (int64_t i = 0; i < n; i += kLowBlock) {
            const int64_t m = std::min(kLowBlock, n - i);
            st |= k.check_probs(io->read(0, lp.input + i, m), io->read(1, lp.target + i, m), m);
          }
          status.store(st);
        } else {
          status.store(k.check_probs(a.input, a.target, n));
        }
      }
      if (status.load() == 0)
        parallel_reduce(
            n, kGrain, 1,
            [&](int64_t b, int64_t e, double* partial) {
              int st;
              if constexpr (low)
                st = low_binary_range(fn, op, a, lp, *io, b, e, partial);
              else
                st = fn(op, a, b, e, partial);
              if (st) status.fetch_or(st);
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
