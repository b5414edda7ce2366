// Cross-entropy and NLL kernels. To be filled by the multiclass-loss work.
#pragma once

#include <cstdint>

namespace logitops {

struct CrossEntropyTable {
  int unused;
};

namespace scalar { const CrossEntropyTable& cross_entropy_table(); }
namespace avx2 { const CrossEntropyTable& cross_entropy_table(); }

}  // namespace logitops
