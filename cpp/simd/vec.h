// The vector layer: one small interface, Simd<T>, that every kernel is written against.
//
// Each kernel source is compiled once per instruction set with LO_TARGET set to that set's
// name (scalar, avx2). Everything in this layer lives in namespace logitops::LO_TARGET, so the
// AVX2 build of an inline helper can never be linked into the scalar path (which would crash
// a CPU without AVX2 with SIGILL).
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
#pragma once

#include <cstdint>
#include <cstring>
#include <cmath>
#include <limits>

#ifndef LO_TARGET
#error "LO_TARGET must name the instruction set this file is compiled for"
#endif

// For the small vector functions of the hot loops (exp and friends): GCC's inliner may give up
// on them inside large instantiations, and an out-of-line call per vector costs a fifth of a
// kernel (measured: cross_entropy 2048x32000 35 -> 44 ms).
#define LO_INLINE inline __attribute__((always_inline))

#define LO_STR2(x) #x
#define LO_STR(x) LO_STR2(x)

// Compare against the bare token: scalar=1, avx2=2.
#define LO_ISA_scalar 1
#define LO_ISA_avx2 2
#define LO_CAT2(a, b) a##b
#define LO_CAT(a, b) LO_CAT2(a, b)
#define LO_ISA_ID LO_CAT(LO_ISA_, LO_TARGET)

#if LO_ISA_ID == LO_ISA_avx2
#include "simd/vec_avx2.h"
#elif LO_ISA_ID == LO_ISA_scalar
#include "simd/vec_scalar.h"
#else
#error "unknown LO_TARGET"
#endif
