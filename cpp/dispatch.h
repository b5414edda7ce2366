// Instruction-set dispatch: the CPU is probed once, one ISA is chosen (or forced with the
// environment LOGITOPS_ISA), and every kernel family hands out the table of that ISA.
#pragma once

#include <string>
#include <type_traits>
#include <vector>

namespace logitops {

enum class Isa { scalar = 0, avx2 = 1 };

const char* isa_name(Isa isa);
// ISAs compiled into this build that this CPU can run, best last.
std::vector<Isa> available_isas();
// The ISA in use. Chosen on first call: LOGITOPS_ISA if set (throws std::invalid_argument
// when it names an unknown ISA or one this CPU cannot run), else the best available.
Isa active_isa();
// For the test suite, which runs every test on every available ISA. Throws like above.
void set_active_isa(const std::string& name);

// The active ISA's table of a kernel family: Table& (*)() for each compiled ISA.
template <class Table>
const Table& select_table(const Table& (*scalar_table)(), const Table& (*avx2_table)()) {
  (void)avx2_table;
#if defined(LOGITOPS_HAVE_AVX2)
  if (active_isa() == Isa::avx2) return avx2_table();
#endif
  return scalar_table();
}

}  // namespace logitops

// The active ISA's table of family function `fn` (declared in namespaces scalar and avx2).
#if defined(LOGITOPS_HAVE_AVX2)
#define LO_ACTIVE_TABLE(fn) ::logitops::select_table(&::logitops::scalar::fn, &::logitops::avx2::fn)
#else
#define LO_ACTIVE_TABLE(fn) ::logitops::select_table(&::logitops::scalar::fn, decltype(&::logitops::scalar::fn){nullptr})
#endif

namespace logitops {
// The float or double half of a family table ({f32, f64} members).
template <class T, class Table>
const auto& for_dtype(const Table& table) {
  if constexpr (std::is_same_v<T, float>) return table.f32; else return table.f64;
}
}  // namespace logitops
