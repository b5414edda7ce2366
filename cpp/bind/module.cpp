// The extension module: wires each family's bindings, the dispatch and thread settings.
#include <stdexcept>

#include "bind/common.h"
#include "families.h"  // generated: LO_FAMILY_LIST, from cpp/bind/bind_*.cpp

namespace logitops {
#define LO_DECLARE_REGISTER(family) void register_##family(py::module_& m);
LO_FAMILY_LIST(LO_DECLARE_REGISTER)
#undef LO_DECLARE_REGISTER
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
  m.def("set_result_cache_limit", [](size_t bytes) { set_result_cache_limit(bytes); });
  m.def("get_result_cache_limit", [] { return result_cache_limit(); });
  m.def("empty_result_cache", [] { empty_result_cache(); });
  m.def("result_cache_info", [] {
    const ResultCacheStats s = result_cache_stats();
    py::dict d;
    d["limit"] = s.limit;
    d["bytes"] = s.idle_bytes;
    d["buffers"] = s.idle_buffers;
    d["hits"] = s.hits;
    d["misses"] = s.misses;
    d["min_bytes"] = kResultCacheMinBytes;
    return d;
  });
  register_loss_words(m);
#define LO_CALL_REGISTER(family) register_##family(m);
  LO_FAMILY_LIST(LO_CALL_REGISTER)
#undef LO_CALL_REGISTER
}
