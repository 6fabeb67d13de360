// Causal multi-head self-attention with optional rotary position embedding (RoPE, Su et
// al. 2021, the half-split form of GPT-NeoX and LLaMA). Right padding needs no mask:
// under the causal mask a real token never sees a later (pad) position.
// Legend: B batch, L length, D model width, H heads, d head width.
#pragma once

#include <ATen/ATen.h>

#include "common/parameters.h"

namespace triage {

// Dropout on the attention probabilities while training: rate p, masks keyed by `key` and
// each sequence's global index (first_sequence + b), so any layout drops the same.
struct AttentionDropout {
  double p = 0;
  uint64_t key = 0;
  int64_t first_sequence = 0;
};

// RoPE's base: theta_i = kRopeTheta^(-i / half) are LLaMA's frequencies.
constexpr double kRopeTheta = 10000.0;

class CausalSelfAttention {
 public:
  CausalSelfAttention(int64_t d_model, int64_t n_heads, bool rotary, int64_t max_seq_len,
                      double out_std, at::ScalarType dtype, at::Generator& generator);

  at::Tensor forward(const at::Tensor& x_BLD, const AttentionDropout& dropout = {}) const;
  ParameterList parameters() const { return {{"w_qkv", w_qkv_}, {"w_out", w_out_}}; }
  void to(at::Device device);  // the rotary tables; parameters move with the model's

 private:
  at::Tensor rotate(const at::Tensor& x_BHLd) const;

  int64_t n_heads_;
  bool rotary_;
  at::Tensor w_qkv_;            // [D, 3D]: queries, keys, values side by side
  at::Tensor w_out_;            // [D, D]
  at::Tensor cos_Ld_, sin_Ld_;  // rotary tables for positions 0 .. max_seq_len-1 (d/2 wide)
};

}  // namespace triage
