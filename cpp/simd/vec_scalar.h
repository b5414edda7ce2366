// Portable one-lane implementation of the vector layer (see vec.h). It is the reference
// path: the same algorithms as the SIMD sets, one element at a time, no fused multiply-add.
#pragma once

#include <type_traits>

#include "simd/lowp_scalar.h"

namespace logitops {
namespace LO_TARGET {

template <class T>
struct ScalarBits;
template <>
struct ScalarBits<float> {
  using U = uint32_t;
  static constexpr int mant_bits = 23;
  static constexpr int bias = 127;
};
template <>
struct ScalarBits<double> {
  using U = uint64_t;
  static constexpr int mant_bits = 52;
  static constexpr int bias = 1023;
};

template <class T>
struct Simd {
  using V = T;
  using M = bool;
  // float lanes sum exactly enough in double; double lanes are compensated (TwoSum), since a
  // plain sum of n terms drifts by ~n/2 ulp.
  struct Acc {
    double s, c;
  };
  static constexpr int64_t W = 1;

  static V load(const T* p) { return *p; }
  static void store(T* p, V a) { *p = a; }
  static V load_tail(const T* p, int64_t n, T fill) { return n > 0 ? *p : fill; }
  static void store_tail(T* p, int64_t n, V a) {
    if (n > 0) *p = a;
  }
  static V set(T a) { return a; }
  static V zero() { return T(0); }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V min(V a, V b) { return a < b ? a : b; }
  static V max(V a, V b) { return a > b ? a : b; }
  static V abs(V a) { return std::fabs(a); }
  static M lt(V a, V b) { return a < b; }
  static M le(V a, V b) { return a <= b; }
  static M gt(V a, V b) { return a > b; }
  static M ge(V a, V b) { return a >= b; }
  static M eq(V a, V b) { return a == b; }
  static M isnan(V a) { return a != a; }
  static M mask_and(M a, M b) { return a && b; }
  static M mask_or(M a, M b) { return a || b; }
  static M mask_not(M a) { return !a; }
  static bool any(M a) { return a; }
  static V select(M m, V a, V b) { return m ? a : b; }
  static V round_int(V a) { return std::nearbyint(a); }
  // Rows of two values and class targets, a row a lane (vec.h).
  // (Simd<double> also reads and writes float memory: widened exactly, rounded once.) Only those
  // memory types, as AVX2 and NEON have them: a kernel that compiles here compiles there.
  template <class U>
  static constexpr bool kFloatInDouble = std::is_same_v<T, double> && std::is_same_v<U, float>;
  template <class U, class = std::enable_if_t<std::is_same_v<U, T> || kFloatInDouble<U>>>
  static void load_pairs(const U* p, V& a, V& b) {
    a = static_cast<V>(p[0]);
    b = static_cast<V>(p[1]);
  }
  template <class U, class = std::enable_if_t<std::is_same_v<U, T> || kFloatInDouble<U>>>
  static void store_pairs(U* p, V a, V b) {
    p[0] = static_cast<U>(a);
    p[1] = static_cast<U>(b);
  }
  template <class U, class = std::enable_if_t<kFloatInDouble<U>>>
  static V load(const U* p) {
    return static_cast<V>(*p);
  }
  template <class U, class = std::enable_if_t<kFloatInDouble<U>>>
  static void store(U* p, V a) {
    *p = static_cast<U>(a);
  }
  template <size_t K>
  static void eq_i64(const int64_t* p, const int64_t (&values)[K], M (&masks)[K]) {
    const int64_t v = *p;
    for (size_t k = 0; k < K; ++k) masks[k] = v == values[k];
  }

  using U = typename ScalarBits<T>::U;
  static U bits(V a) {
    U u;
    std::memcpy(&u, &a, sizeof u);
    return u;
  }
  static V from_bits(U u) {
    V a;
    std::memcpy(&a, &u, sizeof a);
    return a;
  }
  static V pow2i(V n) {
    if (!(n == n)) return n;  // NaN: the conversion below would be undefined
    const auto e = static_cast<U>(static_cast<int64_t>(n) + ScalarBits<T>::bias);
    return from_bits(static_cast<U>(e << ScalarBits<T>::mant_bits));
  }
  static V low_bits_to_exponent(V t) { return from_bits(static_cast<U>(bits(t) << ScalarBits<T>::mant_bits)); }
  static V exponent(V x) {
    return static_cast<T>(static_cast<int64_t>(bits(x) >> ScalarBits<T>::mant_bits) - ScalarBits<T>::bias);
  }
  static V mantissa(V x) {
    const U mant_mask = (U(1) << ScalarBits<T>::mant_bits) - 1;
    return from_bits((bits(x) & mant_mask) | bits(T(1)));
  }
  static T reduce_max(V a) { return a; }
  static T reduce_add(V a) { return a; }

  static Acc acc_zero() { return {0.0, 0.0}; }
  static void acc_add(Acc& acc, V a) {
    const double x = static_cast<double>(a);
    if constexpr (std::is_same_v<T, float>) {
      acc.s += x;
    } else {
      const double t = acc.s + x;
      const double bp = t - acc.s;
      acc.c += (acc.s - (t - bp)) + (x - bp);
      acc.s = t;
    }
  }
  // Once a sum is infinite its error term is inf - inf = NaN: the infinity is the answer.
  static double acc_sum(Acc acc) { return std::isfinite(acc.s) ? acc.s + acc.c : acc.s; }

  // float16 / bfloat16 bit patterns (used with T = float only)
  static V load_f16(const uint16_t* p) { return f16_to_f32(*p); }
  static V load_bf16(const uint16_t* p) { return bf16_to_f32(*p); }
  static void store_f16(uint16_t* p, V a) { *p = f32_to_f16(static_cast<float>(a)); }
  static void store_bf16(uint16_t* p, V a) { *p = f32_to_bf16(static_cast<float>(a)); }
};

}  // namespace LO_TARGET
}  // namespace logitops
