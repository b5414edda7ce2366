#include "kernels/convert.h"

#include "simd/vec.h"

namespace logitops {
namespace LO_TARGET {
namespace {

using S = Simd<float>;

void f16_to_f32_n(const uint16_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + S::W <= n; i += S::W) S::store(dst + i, S::load_f16(src + i));
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}
void bf16_to_f32_n(const uint16_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + S::W <= n; i += S::W) S::store(dst + i, S::load_bf16(src + i));
  for (; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}
void f32_to_f16_n(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
  for (; i + S::W <= n; i += S::W) S::store_f16(dst + i, S::load(src + i));
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}
void f32_to_bf16_n(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
  for (; i + S::W <= n; i += S::W) S::store_bf16(dst + i, S::load(src + i));
  for (; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}

}  // namespace

const ConvertKernels& convert_table() {
  static const ConvertKernels table{{f16_to_f32_n, bf16_to_f32_n}, {f32_to_f16_n, f32_to_bf16_n}};
  return table;
}

}  // namespace LO_TARGET
}  // namespace logitops
