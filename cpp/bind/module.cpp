// The extension module: wires each family's bindings, the dispatch and thread settings.
#include <stdexcept>

#include "bind/common.h"
#include "kernels/vmath_probe.h"

namespace logitops {
namespace {

// Applies one vector math function on a chosen ISA (tests prove vmath.h's contract with it).
py::array vmath_probe(const std::string& fn, py::array x, const std::string& isa) {
  return by_float_dtype(x, "x", [&](auto tag) -> py::array {
    using T = decltype(tag);
    const T* xp = cdata<T>(x, "x");
    const int64_t n = static_cast<int64_t>(x.size());
    const VmathTable* table = nullptr;
    if (isa == "scalar") table = &scalar::vmath_table();
#if defined(LOGITOPS_HAVE_AVX2)
    else if (isa == "avx2") table = &avx2::vmath_table();
#endif
    if (!table) throw py::value_error("isa: not compiled in: " + isa);
    const VmathKernels<T>& k = [&]() -> const VmathKernels<T>& {
      if constexpr (std::is_same_v<T, float>) return table->f32; else return table->f64;
    }();
    auto f = fn == "exp" ? k.exp : fn == "log1p" ? k.log1p : fn == "log" ? k.log : fn == "softplus" ? k.softplus : nullptr;
    if (!f) throw py::value_error("fn: unknown " + fn);
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    auto out = new_array<T>(shape);
    T* op = out.mutable_data();
    py::gil_scoped_release nogil;
    f(xp, n, op);
    return out;
  });
}

}  // namespace
}  // namespace logitops

PYBIND11_MODULE(_core, m) {
  using namespace logitops;
  m.doc() = "logitops C++ core (kernels, dispatch, threads); use the logitops package, not this.";
  try {
    active_isa();
  } catch (const std::invalid_argument& e) {
    throw py::import_error(e.what());
  }
  m.def("isa", [] { return std::string(isa_name(active_isa())); });
  m.def("available_isas", [] {
    std::vector<std::string> names;
    for (Isa isa : available_isas()) names.emplace_back(isa_name(isa));
    return names;
  });
  m.def("_set_isa", [](const std::string& name) {
    try {
      set_active_isa(name);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  });
  m.def("set_num_threads", &set_num_threads);
  m.def("get_num_threads", &get_num_threads);
  m.def("_vmath", &vmath_probe, py::arg("fn"), py::arg("x"), py::arg("isa"));
  register_loss_words(m);
  register_primitives(m);
  register_binary(m);
  register_cross_entropy(m);
}
