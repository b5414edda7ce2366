#include "kernels/binary.h"

#include "kernels/loops.h"
#include "simd/vmath.h"

namespace logitops {
namespace LO_TARGET {

const BinaryTable& binary_table() {
  static const BinaryTable table{0};
  return table;
}

}  // namespace LO_TARGET
}  // namespace logitops
