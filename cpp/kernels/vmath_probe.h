// The vector math functions (simd/vmath.h) as plain elementwise kernels, so the tests can
// prove their accuracy contract on every ISA directly, not only through the functions built
// on them.
#pragma once

#include <cstdint>

#include "isa_list.h"

namespace logitops {

template <class T>
struct VmathKernels {
  void (*exp)(const T* x, int64_t n, T* out);
  void (*log1p)(const T* x, int64_t n, T* out);
  void (*log)(const T* x, int64_t n, T* out);
  void (*softplus)(const T* x, int64_t n, T* out);
  void (*tanh)(const T* x, int64_t n, T* out);
  void (*tanh_pair)(const T* x, int64_t n, T* out);  // vtanh_sech2's tanh
  void (*sech2)(const T* x, int64_t n, T* out);      // vtanh_sech2's sech^2
};

struct VmathTable {
  VmathKernels<float> f32;
  VmathKernels<double> f64;
};

LO_DECLARE_TABLE(const VmathTable&, vmath_table)

}  // namespace logitops
