#include "dispatch.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace logitops {
namespace {

#define LO_ISA_NAME_(name, probe, ctx) #name,
constexpr const char* kIsaNames[kIsaCount] = {LO_ISA_LIST(LO_ISA_NAME_, ~)};
#undef LO_ISA_NAME_

// The probe of an ISA this build did not compile is not compiled either: it may use builtins
// of another architecture.
bool cpu_supports(Isa isa) {
  switch (isa) {
#define LO_ISA_CASE_(name, probe, ctx) \
  case Isa::name:                      \
    return LO_IF_ISA_COMPILED(name, (probe), false);
    LO_ISA_LIST(LO_ISA_CASE_, ~)
#undef LO_ISA_CASE_
  }
  return false;
}

std::string known_names() {
  std::string out;
  for (const char* name : kIsaNames) out += (out.empty() ? "" : ", ") + std::string(name);
  return out;
}

Isa parse_isa(const std::string& name) {
  const std::optional<Isa> isa = isa_from_name(name);
  if (!isa)
    throw std::invalid_argument("LOGITOPS_ISA: unknown instruction set '" + name + "' (known: " + known_names() + ")");
  if (!cpu_supports(*isa))
    throw std::invalid_argument("LOGITOPS_ISA: '" + name + "' is not supported by this build or CPU");
  return *isa;
}

std::atomic<int> g_isa{-1};
std::once_flag g_isa_once;

}  // namespace

const char* isa_name(Isa isa) {
  const int i = static_cast<int>(isa);
  return i >= 0 && i < kIsaCount ? kIsaNames[i] : "?";
}

std::optional<Isa> isa_from_name(const std::string& name) {
  for (int i = 0; i < kIsaCount; ++i)
    if (name == kIsaNames[i]) return static_cast<Isa>(i);
  return std::nullopt;
}

bool isa_runnable(Isa isa) { return cpu_supports(isa); }

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (int i = 0; i < kIsaCount; ++i)
    if (cpu_supports(static_cast<Isa>(i))) out.push_back(static_cast<Isa>(i));
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
