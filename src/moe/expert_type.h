// The feed-forward form that routed experts, shared experts and dense blocks share, and its
// activation, defined once:
//   GELU MLP  y = gelu(x W_in) W_out
//   SwiGLU    y = (silu(x W_gate) * (x W_up)) W_out
// (The experts' hand-written backward, in expert_math, is the only other place the
// activation's derivative appears; the dense block's comes from autograd.)
#pragma once

#include <ATen/ATen.h>

#include "config/choices.h"

namespace triage {

// The hidden activation from the pre-activations; up is used (and defined) for SwiGLU only.
inline at::Tensor expert_hidden(ExpertType type, const at::Tensor& gate, const at::Tensor& up) {
  return type == ExpertType::kGelu ? at::gelu(gate) : at::silu(gate) * up;
}

}  // namespace triage
