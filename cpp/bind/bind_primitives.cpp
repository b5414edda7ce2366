// Bindings of the primitive kernels. Row functions take a C-contiguous (rows, cols) array
// (the Python layer moves the reduced axes last); elementwise ones any C-contiguous array.
// Shapes, dtypes and sizes are checked here as far as the kernels rely on them.
#include "bind/common.h"
#include "kernels/primitives.h"

namespace logitops {
namespace {

template <class T>
const PrimitiveKernels<T>& kernels() {
  return for_dtype<T>(LO_ACTIVE_TABLE(primitive_table));
}

// Rows are split across threads in chunks of about 256k elements of work: the kernels prefetch
// the next row of their chunk while working on one, so a chunk should hold several rows.
int64_t row_grain(int64_t cols) { return grain_for(cols + 16, 1 << 18); }

py::array logsumexp(const py::array& x) {
  return by_float_dtype(x, "x", [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* xp = rows_data<T>(x, "x");
    const int64_t rows = dim(x, 0), cols = dim(x, 1);
    auto out = new_array<T>({x.shape(0)});
    T* op = out.mutable_data();
    const auto f = kernels<T>().logsumexp;
    ReleaseGil nogil;
    parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) { f(xp + b * cols, e - b, cols, op + b); });
    return out;
  });
}

template <class T>
using RowMap = void (*)(const T*, int64_t, int64_t, T*);
template <class T>
using RowGradMap = void (*)(const T*, const T*, int64_t, int64_t, T*);

// The result array: `out` when given (shape checked; it may be x itself), else a new one.
template <class T>
py::array result_array(const py::object& out, const py::array& x) {
  const std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  if (out.is_none()) return new_array<T>(shape);
  py::array a = out.cast<py::array>();
  out_data<T>(a, shape, "out");
  return a;
}

// out (rows, cols) = row function of x.
template <template <class> class Sel>
py::array row_map(const py::array& x, const py::object& out_arg) {
  return by_float_dtype(x, "x", [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* xp = rows_data<T>(x, "x");
    const int64_t rows = dim(x, 0), cols = dim(x, 1);
    py::array out = result_array<T>(out_arg, x);
    T* op = static_cast<T*>(out.mutable_data());
    const RowMap<T> f = Sel<T>::get(kernels<T>());
    if (cols == 0) return out;  // nothing to compute, however many (empty) rows the shape counts
    ReleaseGil nogil;
    parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) { f(xp + b * cols, e - b, cols, op + b * cols); });
    return out;
  });
}

// out (rows, cols) = row gradient; grad has `grad_cols` per row (1 for logsumexp, cols otherwise).
template <template <class> class Sel>
py::array row_grad(const py::array& grad, const py::array& x) {
  return by_float_dtype(x, "x", [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* xp = rows_data<T>(x, "x");
    const T* gp = cdata<T>(grad, "grad_output");
    const int64_t rows = dim(x, 0), cols = dim(x, 1);
    const int64_t grad_cols = Sel<T>::per_row_grad ? 1 : cols;
    if (static_cast<int64_t>(grad.size()) != rows * grad_cols) throw py::value_error("grad_output has the wrong size");
    auto out = new_array<T>({x.shape(0), x.shape(1)});
    T* op = out.mutable_data();
    const RowGradMap<T> f = Sel<T>::get(kernels<T>());
    if (cols == 0) return out;  // nothing to compute, however many (empty) rows the shape counts
    ReleaseGil nogil;
    parallel_for(rows, row_grain(cols),
                 [&](int64_t b, int64_t e) { f(gp + b * grad_cols, xp + b * cols, e - b, cols, op + b * cols); });
    return out;
  });
}

// Elementwise: out = f(x) or f(grad, x), same shape as x.
template <template <class> class Sel>
py::array elementwise(const py::array& x, const py::object& out_arg) {
  return by_float_dtype(x, "x", [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* xp = cdata<T>(x, "x");
    const int64_t n = static_cast<int64_t>(x.size());
    py::array out = result_array<T>(out_arg, x);
    T* op = static_cast<T*>(out.mutable_data());
    const auto f = Sel<T>::get(kernels<T>());
    ReleaseGil nogil;
    parallel_for(n, grain_for(1, 65536), [&](int64_t b, int64_t e) { f(xp + b, e - b, op + b); });
    return out;
  });
}

template <template <class> class Sel>
py::array elementwise_grad(const py::array& grad, const py::array& x) {
  return by_float_dtype(x, "x", [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* xp = cdata<T>(x, "x");
    const T* gp = cdata<T>(grad, "grad_output");
    const int64_t n = static_cast<int64_t>(x.size());
    if (static_cast<int64_t>(grad.size()) != n) throw py::value_error("grad_output has the wrong size");
    auto out = new_array<T>(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    T* op = out.mutable_data();
    const auto f = Sel<T>::get(kernels<T>());
    ReleaseGil nogil;
    parallel_for(n, grain_for(1, 65536), [&](int64_t b, int64_t e) { f(gp + b, xp + b, e - b, op + b); });
    return out;
  });
}

#define LO_SELECT(Name, member, per_row)                               \
  template <class T>                                                   \
  struct Name {                                                        \
    static constexpr bool per_row_grad = per_row;                      \
    static auto get(const PrimitiveKernels<T>& k) { return k.member; } \
  };
LO_SELECT(SelLogSoftmax, log_softmax, false)
LO_SELECT(SelSoftmax, softmax, false)
LO_SELECT(SelLogsumexpBackward, logsumexp_backward, true)
LO_SELECT(SelLogSoftmaxBackward, log_softmax_backward, false)
LO_SELECT(SelSoftmaxBackward, softmax_backward, false)
LO_SELECT(SelLogSigmoid, log_sigmoid, false)
LO_SELECT(SelSigmoid, sigmoid, false)
LO_SELECT(SelLogSigmoidBackward, log_sigmoid_backward, false)
LO_SELECT(SelSigmoidBackward, sigmoid_backward, false)
#undef LO_SELECT

}  // namespace

void register_primitives(py::module_& m) {
  m.def("logsumexp", &logsumexp, py::arg("x"));
  m.def("log_softmax", &row_map<SelLogSoftmax>, py::arg("x"), py::arg("out") = py::none());
  m.def("softmax", &row_map<SelSoftmax>, py::arg("x"), py::arg("out") = py::none());
  m.def("logsumexp_backward", &row_grad<SelLogsumexpBackward>, py::arg("grad_output"), py::arg("x"));
  m.def("log_softmax_backward", &row_grad<SelLogSoftmaxBackward>, py::arg("grad_output"), py::arg("x"));
  m.def("softmax_backward", &row_grad<SelSoftmaxBackward>, py::arg("grad_output"), py::arg("x"));
  m.def("log_sigmoid", &elementwise<SelLogSigmoid>, py::arg("x"), py::arg("out") = py::none());
  m.def("sigmoid", &elementwise<SelSigmoid>, py::arg("x"), py::arg("out") = py::none());
  m.def("log_sigmoid_backward", &elementwise_grad<SelLogSigmoidBackward>, py::arg("grad_output"), py::arg("x"));
  m.def("sigmoid_backward", &elementwise_grad<SelSigmoidBackward>, py::arg("grad_output"), py::arg("x"));
}

}  // namespace logitops
