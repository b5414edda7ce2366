// The extension module: wires each family's bindings, the dispatch and thread settings.
#include <stdexcept>

#include "bind/common.h"

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
  register_loss_words(m);
  register_primitives(m);
  register_binary(m);
  register_cross_entropy(m);
}
