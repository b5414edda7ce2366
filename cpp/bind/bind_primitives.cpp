// Bindings of the primitive kernels. Row functions take a C-contiguous (rows, cols) array
// (the Python layer moves the reduced axes last); elementwise ones any C-contiguous array.
// Shapes, dtypes and sizes are checked here as far as the kernels rely on them. float16 and
// bfloat16 arrays go through float32 blocks (bind/low_precision.h): row blocks for the row
// functions, kLowBlock elements for the elementwise ones.
#include "bind/common.h"
#include "bind/low_precision.h"
#include "kernels/primitives.h"

namespace logitops {
namespace {

template <class T>
const PrimitiveKernels<T>& kernels() {
  return for_dtype<T>(LO_ACTIVE_TABLE(primitive_table));
}

// Rows [begin, end) in blocks of whole rows of a 16-bit call: f(first_row, rows).
template <class F>
void for_row_blocks(int64_t begin, int64_t end, int64_t cols, F&& f) {
  const int64_t R = low_rows_per_block(cols);
  for (int64_t r0 = begin; r0 < end; r0 += R) f(r0, std::min(R, end - r0));
}

py::array logsumexp(const py::array& x) {
  return by_storage(x, "x", [&](auto tag) -> py::array {
    using St = decltype(tag);
    using T = compute_t<St>;
    if (x.ndim() != 2) throw py::value_error("x must be 2-D (rows, cols)");
    const int64_t rows = dim(x, 0), cols = dim(x, 1);
    py::array out = new_result<St>({x.shape(0)}, x);
    const auto f = kernels<T>().logsumexp;
    if constexpr (is_low_v<St>) {
      const uint16_t* xp = low_cdata(x, x.dtype(), "x");
      uint16_t* op = static_cast<uint16_t*>(out.mutable_data());
      const LowIo io(St::format);
      ReleaseGil nogil;
      parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) {
        for_row_blocks(b, e, cols, [&](int64_t r0, int64_t nr) {
          float* lse = block_buffer(1, nr);
          f(io.read(0, xp + r0 * cols, nr * cols), nr, cols, lse);
          io.write(lse, nr, op + r0);
        });
      });
    } else {
      const T* xp = rows_data<T>(x, "x");
      T* op = static_cast<T*>(out.mutable_data());
      ReleaseGil nogil;
      parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) { f(xp + b * cols, e - b, cols, op + b); });
    }
    return out;
  });
}

template <class T>
using RowMap = void (*)(const T*, int64_t, int64_t, T*);
template <class T>
using RowGradMap = void (*)(const T*, const T*, int64_t, int64_t, T*);

// The result array: `out` when given (shape and dtype checked; it may be x itself), else a new one.
template <class St>
py::array result_array(const py::object& out, const py::array& x) {
  const std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  if (out.is_none()) return new_result<St>(shape, x);
  py::array a = out.cast<py::array>();
  if constexpr (is_low_v<St>)
    low_out(a, shape, x.dtype(), "out");
  else
    out_data<St>(a, shape, "out");
  return a;
}

// out (rows, cols) = row function of x.
template <template <class> class Sel>
py::array row_map(const py::array& x, const py::object& out_arg) {
  return by_storage(x, "x", [&](auto tag) -> py::array {
    using St = decltype(tag);
    using T = compute_t<St>;
    if (x.ndim() != 2) throw py::value_error("x must be 2-D (rows, cols)");
    const int64_t rows = dim(x, 0), cols = dim(x, 1);
    const RowMap<T> f = Sel<T>::get(kernels<T>());
    if constexpr (is_low_v<St>) {
      const uint16_t* xp = low_cdata(x, x.dtype(), "x");
      py::array out = result_array<St>(out_arg, x);
      uint16_t* op = static_cast<uint16_t*>(out.mutable_data());
      if (cols == 0) return out;
      const LowIo io(St::format);
      ReleaseGil nogil;
      parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) {
        for_row_blocks(b, e, cols, [&](int64_t r0, int64_t nr) {
          float* blk = io.read(0, xp + r0 * cols, nr * cols);
          f(blk, nr, cols, blk);  // in place, as out=x
          io.write(blk, nr * cols, op + r0 * cols);
        });
      });
      return out;
    } else {
      const T* xp = rows_data<T>(x, "x");
      py::array out = result_array<St>(out_arg, x);
      T* op = static_cast<T*>(out.mutable_data());
      if (cols == 0) return out;  // nothing to compute, however many (empty) rows the shape counts
      ReleaseGil nogil;
      parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) { f(xp + b * cols, e - b, cols, op + b * cols); });
      return out;
    }
  });
}

// out (rows, cols) = row gradient; grad has `grad_cols` per row (1 for logsumexp, cols otherwise).
template <template <class> class Sel>
py::array row_grad(const py::array& grad, const py::array& x) {
  return by_storage(x, "x", [&](auto tag) -> py::array {
    using St = decltype(tag);
    using T = compute_t<St>;
    if (x.ndim() != 2) throw py::value_error("x must be 2-D (rows, cols)");
    const int64_t rows = dim(x, 0), cols = dim(x, 1);
    const int64_t grad_cols = Sel<T>::per_row_grad ? 1 : cols;
    const RowGradMap<T> f = Sel<T>::get(kernels<T>());
    if constexpr (is_low_v<St>) {
      const uint16_t* xp = low_cdata(x, x.dtype(), "x");
      const uint16_t* gp = low_cdata(grad, x.dtype(), "grad_output");
      if (static_cast<int64_t>(grad.size()) != rows * grad_cols)
        throw py::value_error("grad_output has the wrong size");
      py::array out = new_result<St>({x.shape(0), x.shape(1)}, x);
      uint16_t* op = static_cast<uint16_t*>(out.mutable_data());
      if (cols == 0) return out;
      const LowIo io(St::format);
      ReleaseGil nogil;
      parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) {
        for_row_blocks(b, e, cols, [&](int64_t r0, int64_t nr) {
          float* res = block_buffer(2, nr * cols);
          f(io.read(1, gp + r0 * grad_cols, nr * grad_cols), io.read(0, xp + r0 * cols, nr * cols), nr, cols, res);
          io.write(res, nr * cols, op + r0 * cols);
        });
      });
      return out;
    } else {
      const T* xp = rows_data<T>(x, "x");
      const T* gp = cdata<T>(grad, "grad_output");
      if (static_cast<int64_t>(grad.size()) != rows * grad_cols)
        throw py::value_error("grad_output has the wrong size");
      auto out = new_array<T>({x.shape(0), x.shape(1)});
      T* op = out.mutable_data();
      if (cols == 0) return out;  // nothing to compute, however many (empty) rows the shape counts
      ReleaseGil nogil;
      parallel_for(rows, row_grain(cols),
                   [&](int64_t b, int64_t e) { f(gp + b * grad_cols, xp + b * cols, e - b, cols, op + b * cols); });
      return out;
    }
  });
}

// Elementwise chunk [b, e) of a 16-bit call in blocks of kLowBlock: f(first, count).
template <class F>
void for_blocks(int64_t begin, int64_t end, F&& f) {
  for (int64_t i = begin; i < end; i += kLowBlock) f(i, std::min(kLowBlock, end - i));
}

// Elementwise: out = f(x) or f(grad, x), same shape as x.
template <template <class> class Sel>
py::array elementwise(const py::array& x, const py::object& out_arg) {
  return by_storage(x, "x", [&](auto tag) -> py::array {
    using St = decltype(tag);
    using T = compute_t<St>;
    const int64_t n = static_cast<int64_t>(x.size());
    const auto f = Sel<T>::get(kernels<T>());
    if constexpr (is_low_v<St>) {
      const uint16_t* xp = low_cdata(x, x.dtype(), "x");
      py::array out = result_array<St>(out_arg, x);
      uint16_t* op = static_cast<uint16_t*>(out.mutable_data());
      const LowIo io(St::format);
      ReleaseGil nogil;
      parallel_for(n, grain_for(1, 65536), [&](int64_t b, int64_t e) {
        for_blocks(b, e, [&](int64_t i, int64_t m) {
          float* blk = io.read(0, xp + i, m);
          f(blk, m, blk);
          io.write(blk, m, op + i);
        });
      });
      return out;
    } else {
      const T* xp = cdata<T>(x, "x");
      py::array out = result_array<St>(out_arg, x);
      T* op = static_cast<T*>(out.mutable_data());
      ReleaseGil nogil;
      parallel_for(n, grain_for(1, 65536), [&](int64_t b, int64_t e) { f(xp + b, e - b, op + b); });
      return out;
    }
  });
}

template <template <class> class Sel>
py::array elementwise_grad(const py::array& grad, const py::array& x) {
  return by_storage(x, "x", [&](auto tag) -> py::array {
    using St = decltype(tag);
    using T = compute_t<St>;
    const int64_t n = static_cast<int64_t>(x.size());
    const auto f = Sel<T>::get(kernels<T>());
    const std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    if constexpr (is_low_v<St>) {
      const uint16_t* xp = low_cdata(x, x.dtype(), "x");
      const uint16_t* gp = low_cdata(grad, x.dtype(), "grad_output");
      if (static_cast<int64_t>(grad.size()) != n) throw py::value_error("grad_output has the wrong size");
      py::array out = new_result<St>(shape, x);
      uint16_t* op = static_cast<uint16_t*>(out.mutable_data());
      const LowIo io(St::format);
      ReleaseGil nogil;
      parallel_for(n, grain_for(1, 65536), [&](int64_t b, int64_t e) {
        for_blocks(b, e, [&](int64_t i, int64_t m) {
          float* res = block_buffer(2, m);
          f(io.read(1, gp + i, m), io.read(0, xp + i, m), m, res);
          io.write(res, m, op + i);
        });
      });
      return out;
    } else {
      const T* xp = cdata<T>(x, "x");
      const T* gp = cdata<T>(grad, "grad_output");
      if (static_cast<int64_t>(grad.size()) != n) throw py::value_error("grad_output has the wrong size");
      auto out = new_array<T>(shape);
      T* op = out.mutable_data();
      ReleaseGil nogil;
      parallel_for(n, grain_for(1, 65536), [&](int64_t b, int64_t e) { f(gp + b, xp + b, e - b, op + b); });
      return out;
    }
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
