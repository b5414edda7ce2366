#include "dispatch.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace logitops {
namespace {

bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return true;
    case Isa::avx2:
#if defined(LOGITOPS_HAVE_AVX2) && (defined(__GNUC__) || defined(__clang__))
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
  }
  return false;
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::scalar, Isa::avx2}) {
    if (name == isa_name(isa)) {
      if (!cpu_supports(isa))
        throw std::invalid_argument("LOGITOPS_ISA: '" + name + "' is not supported by this build or CPU");
      return isa;
    }
  }
  throw std::invalid_argument("LOGITOPS_ISA: unknown instruction set '" + name + "' (known: scalar, avx2)");
}

std::atomic<int> g_isa{-1};
std::once_flag g_isa_once;

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return "scalar";
    case Isa::avx2:
      return "avx2";
  }
  return "?";
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::scalar, Isa::avx2})
    if (cpu_supports(isa)) out.push_back(isa);
  return out;
}

Isa active_isa() {
  std::call_once(g_isa_once, [] {
    const char* env = std::getenv("LOGITOPS_ISA");
    Isa chosen = available_isas().back();
    if (env && *env) chosen = parse_isa(env);
    g_isa.store(static_cast<int>(chosen));
  });
  return static_cast<Isa>(g_isa.load(std::memory_order_relaxed));
}

void set_active_isa(const std::string& name) {
  active_isa();  // make sure the one-time choice has happened
  g_isa.store(static_cast<int>(parse_isa(name)));
}

}  // namespace logitops
