// float16 / bfloat16 <-> float32 conversion kernels: how the low-precision calls of every
// family read their arrays into float32 blocks and write their results back
// (cpp/bind/low_precision.h). Bit patterns travel as uint16_t. Widening is exact; narrowing
// rounds to nearest, ties to even, once; NaN stays NaN. Every ISA gives the same bits
// (simd/lowp_scalar.h).
#pragma once

#include <cstdint>

#include "isa_list.h"

namespace logitops {

// The two 16-bit float formats, as the bindings name them.
enum class LowFormat : int { f16 = 0, bf16 = 1 };

struct ConvertKernels {
  // dst[i] = src[i] widened, i < n
  void (*to_f32[2])(const uint16_t* src, int64_t n, float* dst);
  // dst[i] = src[i] rounded to the format, i < n
  void (*from_f32[2])(const float* src, int64_t n, uint16_t* dst);
};

LO_DECLARE_TABLE(const ConvertKernels&, convert_table)

}  // namespace logitops
