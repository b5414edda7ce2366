// The words every loss family shares across the Python/C++ boundary: which result a call
// computes and how its losses are reduced. Exported to Python as _core.LossOp and
// _core.Reduction (cpp/bind/module.cpp), so neither side keeps a copy of the codes.
#pragma once

#include <type_traits>

namespace logitops {

enum class LossOp : int { loss = 0, grad_input = 1, grad_target = 2, loss_and_grad = 3 };

// none: per-sample losses are stored; mean: gradients are divided by the family's divisor
// (returned to Python, which divides the loss sum by it); sum: neither.
enum class Reduction : int { none = 0, mean = 1, sum = 2 };

// f(std::integral_constant<LossOp, op>{}): a runtime op as a compile-time one, so a kernel's
// loop is compiled once per op without the op's branches (the loss families' entry points).
template <class F>
inline decltype(auto) with_loss_op(LossOp op, F f) {
  switch (op) {
    case LossOp::grad_input:
      return f(std::integral_constant<LossOp, LossOp::grad_input>{});
    case LossOp::grad_target:
      return f(std::integral_constant<LossOp, LossOp::grad_target>{});
    case LossOp::loss_and_grad:
      return f(std::integral_constant<LossOp, LossOp::loss_and_grad>{});
    case LossOp::loss:
      break;
  }
  return f(std::integral_constant<LossOp, LossOp::loss>{});
}

constexpr bool computes_loss(LossOp op) { return op == LossOp::loss || op == LossOp::loss_and_grad; }
constexpr bool computes_grad(LossOp op) { return op != LossOp::loss; }
// The backward ops, which take an upstream gradient (the fused op's is 1).
constexpr bool takes_grad_output(LossOp op) { return op == LossOp::grad_input || op == LossOp::grad_target; }

}  // namespace logitops
