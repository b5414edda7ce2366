#include "kernels/vmath_probe.h"

#include "kernels/loops.h"
#include "simd/vmath.h"

namespace logitops {
namespace LO_TARGET {
namespace {

template <class T>
void exp_n(const T* x, int64_t n, T* out) {
  map_unary(x, n, out, [](typename Simd<T>::V v) { return vexp<T>(v); });
}
template <class T>
void log1p_n(const T* x, int64_t n, T* out) {
  map_unary(x, n, out, [](typename Simd<T>::V v) { return vlog1p<T>(v); });
}
template <class T>
void log_n(const T* x, int64_t n, T* out) {
  map_unary(x, n, out, [](typename Simd<T>::V v) { return vlog<T>(v); });
}

template <class T>
void softplus_n(const T* x, int64_t n, T* out) {
  map_unary(x, n, out, [](typename Simd<T>::V v) { return vsoftplus<T>(v); });
}

}  // namespace

const VmathTable& vmath_table() {
  static const VmathTable table{{exp_n<float>, log1p_n<float>, log_n<float>, softplus_n<float>},
                                {exp_n<double>, log1p_n<double>, log_n<double>, softplus_n<double>}};
  return table;
}

}  // namespace LO_TARGET
}  // namespace logitops
