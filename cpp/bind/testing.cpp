// logitops._testing: entry points for the test suite only, kept out of logitops._core. Built
// with the CMake option LOGITOPS_TESTING (dev.sh turns it on; pip and wheel builds leave it off).
#include <optional>
#include <stdexcept>

#include "bind/common.h"
#include "kernels/vmath_probe.h"

namespace logitops {
namespace {

// Applies one vector math function on the named ISA (tests/test_vmath.py proves vmath.h's
// contract with it, on every ISA, independently of the active one).
py::array vmath(const std::string& fn, py::array x, const std::string& isa_name) {
  const std::optional<Isa> isa = isa_from_name(isa_name);
  if (!isa) throw py::value_error("isa: unknown instruction set '" + isa_name + "'");
  if (!isa_runnable(*isa)) throw py::value_error("isa: '" + isa_name + "' is not supported by this build or CPU");
  const VmathTable& table = LO_ISA_TABLE(vmath_table, *isa);
  return by_float_dtype(x, "x", [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* xp = cdata<T>(x, "x");
    const VmathKernels<T>& k = for_dtype<T>(table);
    auto f = fn == "exp"         ? k.exp
             : fn == "log1p"     ? k.log1p
             : fn == "log"       ? k.log
             : fn == "softplus"  ? k.softplus
             : fn == "tanh"      ? k.tanh
             : fn == "tanh_pair" ? k.tanh_pair
             : fn == "sech2"     ? k.sech2
                                 : nullptr;
    if (!f) throw py::value_error("fn: unknown " + fn);
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    auto out = new_array<T>(shape);
    T* op = out.mutable_data();
    const int64_t n = static_cast<int64_t>(x.size());
    ReleaseGil nogil;  // bind/gil.h: safe for daemon threads at interpreter exit
    f(xp, n, op);
    return out;
  });
}

}  // namespace
}  // namespace logitops

PYBIND11_MODULE(_testing, m) {
  m.doc() = "logitops test-only entry points (not part of the package; built with LOGITOPS_TESTING=ON).";
  m.def("vmath", &logitops::vmath, pybind11::arg("fn"), pybind11::arg("x"), pybind11::arg("isa"));
}
