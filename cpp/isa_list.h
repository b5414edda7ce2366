// The one list of instruction sets. Everything per-ISA in the C++ code is derived from it: the
// Isa enum, the names LOGITOPS_ISA accepts, the CPU probe, the table selection and each kernel
// family's table declarations (cpp/dispatch.h, cpp/dispatch.cpp).
//
// LO_ISA_LIST(ISA, ctx) expands ISA(name, probe, ctx) for every known instruction set, worst
// first (the best one the CPU runs is the default), where
//   name   the token used everywhere: namespace logitops::<name>, LO_TARGET=<name>, the
//          LOGITOPS_ISA value, cpp/simd/vec_<name>.h, and CMake's list in CMakeLists.txt;
//   probe  an expression, true when this CPU can run the code compiled for <name>. It is only
//          compiled into builds that compiled <name>, so it may use target-specific builtins.
// The build says which sets it compiled by defining LOGITOPS_HAVE_<name>=1 (CMakeLists.txt, for
// every target); a known set not compiled in is still a known name, reported as unsupported.
// scalar must stay first and is always compiled: it is the fallback every CPU runs.
#pragma once

// __builtin_cpu_supports on x86 (GCC, Clang); the feature names are GCC's.
#define LO_X86_HAS(feature) (__builtin_cpu_init(), __builtin_cpu_supports(feature))

// neon (AArch64 Advanced SIMD, with FMA and half-precision conversions) is part of the AArch64
// base architecture: every aarch64 CPU runs it, and only aarch64 builds compile it.
#define LO_ISA_LIST(ISA, ctx)                                                   \
  ISA(scalar, true, ctx)                                                        \
  ISA(avx2, LO_X86_HAS("avx2") && LO_X86_HAS("fma") && LO_X86_HAS("f16c"), ctx) \
  ISA(neon, true, ctx)

// ----------------------------------------------------------------------------- helpers

#define LO_CAT_(a, b) a##b
#define LO_CAT(a, b) LO_CAT_(a, b)
#define LO_STR_(x) #x
#define LO_STR(x) LO_STR_(x)

// LO_ISA_COMPILED(name): 1 when LOGITOPS_HAVE_<name> is defined as 1, else 0, usable inside
// macro expansions (where `defined` is not): LO_PROBE_1 adds an argument that shifts 1 into
// second place.
#define LO_SECOND_(a, b, ...) b
#define LO_IS_ONE_(...) LO_SECOND_(__VA_ARGS__, 0, ~)
#define LO_PROBE_1 ~, 1
#define LO_IS_ENABLED_(value) LO_IS_ONE_(LO_CAT(LO_PROBE_, value))
#define LO_ISA_COMPILED(name) LO_IS_ENABLED_(LO_CAT(LOGITOPS_HAVE_, name))

// LO_IF_ISA_COMPILED(name, yes, no): `yes` when name was compiled, else `no`. The branch not
// taken is dropped by the preprocessor, so it may name things that do not exist.
#define LO_IF_0(yes, no) no
#define LO_IF_1(yes, no) yes
#define LO_IF_ISA_COMPILED(name, yes, no) LO_CAT(LO_IF_, LO_ISA_COMPILED(name))(yes, no)

// LO_CALL(m, (args...)) is m(args...) after the arguments were expanded: lets a macro pass
// several values through the single ctx slot of LO_ISA_LIST.
#define LO_CALL(m, args) m args
#define LO_UNPAREN(...) __VA_ARGS__

// In a kernel family's header: declares `type fn();` in namespace logitops::<isa> for every
// compiled ISA (each defined by that family's .cpp, compiled once per ISA with LO_TARGET=<isa>).
// Use inside namespace logitops.
#define LO_DECLARE_TABLE(type, fn) LO_ISA_LIST(LO_DECLARE_TABLE_ONE_, (type, fn))
#define LO_DECLARE_TABLE_ONE_(name, probe, type_fn) \
  LO_IF_ISA_COMPILED(name, LO_CALL(LO_DECLARE_TABLE_IN_, (name, LO_UNPAREN type_fn)), )
#define LO_DECLARE_TABLE_IN_(name, type, fn) \
  namespace name {                           \
  type fn();                                 \
  }
