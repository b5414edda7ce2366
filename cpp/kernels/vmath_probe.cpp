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

template <class T>
void tanh_n(const T* x, int64_t n, T* out) {
  map_unary(x, n, out, [](typename Simd<T>::V v) { return vtanh<T>(v); });
}
template <class T>
void tanh_pair_n(const T* x, int64_t n, T* out) {
  map_unary(x, n, out, [](typename Simd<T>::V v) {
    typename Simd<T>::V t, s2;
    vtanh_sech2<T>(v, t, s2);
    return t;
  });
}
template <class T>
void sech2_n(const T* x, int64_t n, T* out) {
  map_unary(x, n, out, [](typename Simd<T>::V v) {
    typename Simd<T>::V t, s2;
    vtanh_sech2<T>(v, t, s2);
    return s2;
  });
}

template <class T>
constexpr VmathKernels<T> make_vmath() {
  return {exp_n<T>, log1p_n<T>, log_n<T>, softplus_n<T>, tanh_n<T>, tanh_pair_n<T>, sech2_n<T>};
}

}  // namespace

const VmathTable& vmath_table() {
  static const VmathTable table{make_vmath<float>(), make_vmath<double>()};
  return table;
}

}  // namespace LO_TARGET
}  // namespace logitops
