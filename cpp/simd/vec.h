// The vector layer: one small interface, Simd<T>, that every kernel is written against.
//
// Each kernel source is compiled once per instruction set with LO_TARGET set to that set's
// name (one of cpp/isa_list.h), and this header includes that set's implementation,
// cpp/simd/vec_<LO_TARGET>.h. Everything in this layer lives in namespace logitops::LO_TARGET,
// so the AVX2 build of an inline helper can never be linked into the scalar path (which would
// crash a CPU without AVX2 with SIGILL): an inline function compiled with different flags
// under the same name would be merged by the linker, picking either copy.
//
// Simd<T> (T = float or double) provides, as static members:
//   V, M          register and mask types; V supports + - * / and unary - (GCC vector ops)
//   W             lanes per register
//   load/store    unaligned full-width; load_tail/store_tail for the last n < W lanes
//                 (load_tail fills the missing lanes with `fill`)
//   set, zero, fma(a,b,c)=a*b+c (fused where the ISA has it), abs
//   min(a,b) = a < b ? a : b, max(a,b) = a > b ? a : b (x86 semantics: when either is NaN the
//   SECOND operand is returned, so min(bound, x) and max(bound, x) propagate a NaN x)
//   lt/le/gt/ge/eq/isnan -> M; select(m, a, b) = m ? a : b; any(m); mask_and/mask_or/mask_not
//   round_int(x)  round to nearest integer (ties to even) in floating point
//   pow2i(n)      2^n for integer-valued n within the normal exponent range
//   low_bits_to_exponent(t)  the low bits of t's pattern shifted into the exponent field:
//                 for t = 1.5*2^mant_bits + e (an integer 0 < e < 2^exp_bits - 1), this is 2^(e - bias)
//   exponent/mantissa  x = mantissa(x) * 2^exponent(x), mantissa in [1, 2), x positive normal
//   reduce_max, reduce_add over lanes
//   Acc, acc_zero, acc_add, acc_sum   a wider accumulator (double lanes) for sums of V
// Across rows (lane l is row l):
//   load_pairs(p, a, b)  rows of two values: a[l] = p[2l], b[l] = p[2l + 1]; store_pairs the inverse
//                        (Simd<double> also from and to float memory, as load/store of a float*
//                        there: W floats widened exactly, rounded once)
//   eq_i64(p, values, masks)  masks[k] = (p[l] == values[k]) for W int64 values, read once
// Simd<float> only, W values of float16 / bfloat16 (uint16_t bit patterns) at a time, bit for
// bit what simd/lowp_scalar.h does one at a time:
//   load_f16, load_bf16 (widen, exact); store_f16, store_bf16 (round to nearest even)
#pragma once

#include <cstdint>
#include <cstring>
#include <cmath>
#include <limits>

#include "isa_list.h"

#ifndef LO_TARGET
#error "LO_TARGET must name the instruction set this file is compiled for"
#endif

// For the small vector functions of the hot loops (exp and friends): GCC's inliner may give up
// on them inside large instantiations, and an out-of-line call per vector costs a fifth of a
// kernel (measured: cross_entropy 2048x32000 35 -> 44 ms).
#define LO_INLINE inline __attribute__((always_inline))

#if !LO_ISA_COMPILED(LO_TARGET)
#error "LO_TARGET must be an ISA of cpp/isa_list.h that the build compiles (LOGITOPS_HAVE_<isa>=1)"
#endif

// cpp/simd/vec_<LO_TARGET>.h (clang-format would space the path's slash)
// clang-format off
#include LO_STR(LO_CAT(simd/vec_, LO_TARGET).h)
// clang-format on
