// Causal multi-head self-attention with optional rotary position embedding (RoPE, Su et
// al. 2021, the half-split form of GPT-NeoX and LLaMA) and grouped-query attention (GQA,
// Ainslie et al. 2023: K key/value heads, each serving H / K consecutive query heads, as in
// Mixtral and LLaMA 2/3). Right padding needs no mask: under the causal mask a real token
// never sees a later (pad) position.
// Legend: B batch, L length, D model width, H query heads, K key/value heads, d head width.
#pragma once

#include <ATen/ATen.h>

#include "common/parameters.h"
#include "config/choices.h"

namespace triage {

// Dropout on the attention probabilities while training: rate p, masks keyed by `key` and
// each sequence's global index (first_sequence + b), so any layout drops the same.
struct AttentionDropout {
  double p = 0;
  uint64_t key = 0;
  int64_t first_sequence = 0;
};

// RoPE's base by default: theta_i = base^(-i / half), LLaMA's frequencies at 10000.
constexpr double kRopeTheta = 10000.0;

class CausalSelfAttention {
 public:
  // n_kv_heads must divide n_heads (n_kv_heads == n_heads: plain multi-head attention).
  // qkv_bias: the q, k and v projections add a bias (zero at first). qk_norm: queries and
  // keys pass an RMSNorm (weights one at first, epsilon norm_eps) before RoPE.
  struct Options {
    int64_t n_kv_heads = 0;  // 0: n_heads
    bool qkv_bias = false;
    QkNorm qk_norm = QkNorm::kNone;
    double norm_eps = 1e-5;
    double rope_theta = kRopeTheta;
    int64_t head_dim = 0;  // 0: d_model / n_heads
  };
  CausalSelfAttention(int64_t d_model, int64_t n_heads, const Options& options, bool rotary,
                      int64_t max_seq_len, double out_std, at::ScalarType dtype,
                      at::Generator& generator);

  at::Tensor forward(const at::Tensor& x_BLD, const AttentionDropout& dropout = {}) const;
  ParameterList parameters() const;
  void to(at::Device device);  // the rotary tables; parameters move with the model's

 private:
  at::Tensor rotate(const at::Tensor& x_BHLd) const;

  int64_t n_heads_, n_kv_heads_, head_width_;
  bool rotary_;
  at::Tensor w_qkv_;            // [D, (H + 2K) d]: queries, keys, values side by side
  at::Tensor b_qkv_;            // [(H + 2K) d], with qkv_bias
  at::Tensor q_norm_, k_norm_;  // [d] each (qk_norm head), or [H d] and [K d] (projection)
  QkNorm qk_norm_;
  double norm_eps_;
  at::Tensor w_out_;            // [H d, D]
  at::Tensor cos_Ld_, sin_Ld_;  // rotary tables for positions 0 .. max_seq_len-1 (d/2 wide)
};

}  // namespace triage
