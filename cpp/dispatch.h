// Instruction-set dispatch: the CPU is probed once, one ISA is chosen (or forced with the
// environment LOGITOPS_ISA), and every kernel family hands out the table of that ISA. The ISAs
// themselves are listed once, in isa_list.h; nothing here names one.
#pragma once

#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "isa_list.h"

#if !LO_ISA_COMPILED(scalar)
#error "the build must compile the scalar kernels (LOGITOPS_HAVE_scalar=1): every CPU falls back to them"
#endif

namespace logitops {

// Every known ISA, in isa_list.h's order (compiled into this build or not).
#define LO_ISA_ENUMERATOR_(name, probe, ctx) name,
enum class Isa { LO_ISA_LIST(LO_ISA_ENUMERATOR_, ~) };
#undef LO_ISA_ENUMERATOR_
#define LO_ISA_COUNT_ONE_(name, probe, ctx) +1
constexpr int kIsaCount = 0 LO_ISA_LIST(LO_ISA_COUNT_ONE_, ~);
#undef LO_ISA_COUNT_ONE_

const char* isa_name(Isa isa);
// The known ISA called `name`, if any.
std::optional<Isa> isa_from_name(const std::string& name);
// Compiled into this build and runnable on this CPU.
bool isa_runnable(Isa isa);
// ISAs compiled into this build that this CPU can run, best last.
std::vector<Isa> available_isas();
// The ISA in use. Chosen on first call: LOGITOPS_ISA if set (throws std::invalid_argument
// when it names an unknown ISA or one this CPU cannot run), else the best available.
Isa active_isa();
// For the test suite, which runs every test on every available ISA. Throws like above.
void set_active_isa(const std::string& name);

template <class Table>
using TableFn = const Table& (*)();

// The table of `isa` out of one entry per known ISA (null where not compiled; `isa` must be
// runnable, so its entry is not null).
template <class Table>
const Table& table_for(Isa isa, const TableFn<Table> (&by_isa)[kIsaCount]) {
  return by_isa[static_cast<int>(isa)]();
}

}  // namespace logitops

// The table of family function `fn` (declared with LO_DECLARE_TABLE) for `isa`, and for the
// active ISA. scalar is always compiled, so its table names the type.
#define LO_ISA_TABLE(fn, isa) \
  ::logitops::table_for<std::decay_t<decltype(::logitops::scalar::fn())>>((isa), {LO_ISA_LIST(LO_ISA_TABLE_ENTRY_, fn)})
#define LO_ISA_TABLE_ENTRY_(name, probe, fn) LO_IF_ISA_COMPILED(name, &::logitops::name::fn, nullptr),
#define LO_ACTIVE_TABLE(fn) LO_ISA_TABLE(fn, ::logitops::active_isa())

namespace logitops {
// The float or double half of a family table ({f32, f64} members).
template <class T, class Table>
const auto& for_dtype(const Table& table) {
  if constexpr (std::is_same_v<T, float>)
    return table.f32;
  else
    return table.f64;
}
}  // namespace logitops
