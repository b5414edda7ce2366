// Binary cross-entropy kernels (probabilities and logits). To be filled by the binary-loss work.
#pragma once

#include <cstdint>

namespace logitops {

struct BinaryTable {
  int unused;
};

namespace scalar { const BinaryTable& binary_table(); }
namespace avx2 { const BinaryTable& binary_table(); }

}  // namespace logitops
