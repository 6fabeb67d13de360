// A dense feed-forward block, the same function as one expert (swiglu or gelu), used for
// the dense blocks of an MoE transformer and for DeepSeekMoE's shared experts.
#pragma once

#include <ATen/ATen.h>

#include "common/parameters.h"
#include "moe/expert_type.h"

namespace triage {

class FeedForward {
 public:
  FeedForward(int64_t d_model, int64_t d_hidden, ExpertType type, double out_std,
              at::ScalarType dtype, at::Generator& generator);

  at::Tensor forward(const at::Tensor& x) const;
  ParameterList parameters() const;

 private:
  ExpertType type_;
  at::Tensor w_in_;   // [D, H]; swiglu: the gated (silu) branch
  at::Tensor w_up_;   // [D, H]; swiglu only
  at::Tensor w_out_;  // [H, D]
};

}  // namespace triage
