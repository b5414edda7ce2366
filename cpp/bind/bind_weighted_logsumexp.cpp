// Bindings of the weighted log-sum-exp kernels. The Python layer (_primitives.py) broadcast b
// against x, moved the reduced axes last and made both C-contiguous (rows, cols) of one float
// dtype, b either of x's rows shape or a single (cols,) row shared by every row.
#include "bind/common.h"
#include "kernels/weighted_logsumexp.h"

namespace logitops {
namespace {

template <class T>
const WeightedLogsumexpKernels<T>& kernels() {
  return for_dtype<T>(LO_ACTIVE_TABLE(weighted_logsumexp_table));
}

// b's data and its row stride (cols, or 0 for one shared row); b must be (rows, cols) or (cols,).
template <class T>
const T* b_rows(const py::array& b, int64_t rows, int64_t cols, int64_t* stride) {
  const T* p = cdata<T>(b, "b");
  if (b.ndim() == 2 && dim(b, 0) == rows && dim(b, 1) == cols) {
    *stride = cols;
  } else if (b.ndim() == 1 && dim(b, 0) == cols) {
    *stride = 0;
  } else {
    throw py::value_error("b must be (rows, cols) or (cols,) like x");
  }
  return p;
}

// (value (rows,), sign (rows,) or None).
py::tuple forward(const py::array& x, const py::array& b, bool want_sign) {
  return by_float_dtype(x, "x", [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const T* xp = rows_data<T>(x, "x");
    const int64_t rows = dim(x, 0), cols = dim(x, 1);
    int64_t stride = 0;
    const T* bp = b_rows<T>(b, rows, cols, &stride);
    auto value = new_array<T>({x.shape(0)});
    py::object sign_obj = py::none();
    T* sp = nullptr;
    if (want_sign) {
      auto s = new_array<T>({x.shape(0)});
      sp = s.mutable_data();
      sign_obj = s;
    }
    T* vp = value.mutable_data();
    const auto f = kernels<T>().forward;
    {
      ReleaseGil nogil;
      parallel_for(rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
        f(xp + lo * cols, bp + lo * stride, stride, hi - lo, cols, vp + lo, sp ? sp + lo : nullptr);
      });
    }
    return py::make_tuple(value, sign_obj);
  });
}

py::array backward(const py::array& grad, const py::array& x, const py::array& b, bool want_sign) {
  return by_float_dtype(x, "x", [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* xp = rows_data<T>(x, "x");
    const T* gp = cdata<T>(grad, "grad_output");
    const int64_t rows = dim(x, 0), cols = dim(x, 1);
    if (static_cast<int64_t>(grad.size()) != rows) throw py::value_error("grad_output has the wrong size");
    int64_t stride = 0;
    const T* bp = b_rows<T>(b, rows, cols, &stride);
    auto out = new_array<T>({x.shape(0), x.shape(1)});
    T* op = out.mutable_data();
    const auto f = kernels<T>().backward;
    if (cols == 0) return out;
    ReleaseGil nogil;
    parallel_for(rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
      f(gp + lo, xp + lo * cols, bp + lo * stride, stride, hi - lo, cols, want_sign, op + lo * cols);
    });
    return out;
  });
}

}  // namespace

void register_weighted_logsumexp(py::module_& m) {
  m.def("weighted_logsumexp", &forward, py::arg("x"), py::arg("b"), py::arg("want_sign"));
  m.def("weighted_logsumexp_backward", &backward, py::arg("grad_output"), py::arg("x"), py::arg("b"),
        py::arg("want_sign"));
}

}  // namespace logitops
