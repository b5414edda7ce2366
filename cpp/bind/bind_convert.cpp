// The float16 / bfloat16 conversion kernels (kernels/convert.h), which every family's
// low-precision calls use through bind/low_precision.h. Bound for the test suite, which
// proves them bit for bit on every ISA (tests/test_low_precision.py); not a public API.
#include "bind/low_precision.h"

namespace logitops {
namespace {

// float32 values of a C-contiguous float16 / bfloat16 array.
py::array widen(const py::array& x) {
  return by_storage(x, "x", [&](auto tag) -> py::array {
    using St = decltype(tag);
    if constexpr (!is_low_v<St>) {
      throw py::type_error("x must be float16 or bfloat16");
    } else {
      const uint16_t* xp = low_cdata(x, x.dtype(), "x");
      auto out = new_array<float>(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
      LowIo(St::format).widen(xp, static_cast<int64_t>(x.size()), out.mutable_data());
      return out;
    }
  });
}

// A C-contiguous float32 array rounded to the dtype of `like` (float16 or bfloat16).
py::array narrow(const py::array& x, const py::array& like) {
  return by_storage(like, "like", [&](auto tag) -> py::array {
    using St = decltype(tag);
    if constexpr (!is_low_v<St>) {
      throw py::type_error("like must be float16 or bfloat16");
    } else {
      const float* xp = cdata<float>(x, "x");
      const std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
      py::array out = new_result<St>(shape, like);
      LowIo(St::format).write(xp, static_cast<int64_t>(x.size()), static_cast<uint16_t*>(out.mutable_data()));
      return out;
    }
  });
}

}  // namespace

void register_convert(py::module_& m) {
  m.def("_widen", &widen, py::arg("x"));
  m.def("_narrow", &narrow, py::arg("x"), py::arg("like"));
}

}  // namespace logitops
