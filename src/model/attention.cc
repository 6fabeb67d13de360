// Attention through at::scaled_dot_product_attention, which picks the fused CPU/GPU kernel.
#include "model/attention.h"

#include <cmath>
#include <limits>

#include "common/counter_random.h"
#include "model/rms_norm.h"

namespace triage {

CausalSelfAttention::CausalSelfAttention(int64_t d_model, int64_t n_heads, const Options& options,
                                         bool rotary, int64_t max_seq_len, double out_std,
                                         at::ScalarType dtype, at::Generator& generator)
    : n_heads_(n_heads),
      n_kv_heads_(options.n_kv_heads > 0 ? options.n_kv_heads : n_heads),
      head_width_(options.head_dim > 0 ? options.head_dim : d_model / n_heads),
      rotary_(rotary),
      qk_norm_(options.qk_norm),
      norm_eps_(options.norm_eps) {
  const int64_t n_kv_heads = n_kv_heads_;
  const int64_t head_width = head_width_;
  w_qkv_ = normal_parameter({d_model, (n_heads + 2 * n_kv_heads) * head_width}, kInitStd, dtype,
                            generator);
  w_out_ = normal_parameter({n_heads * head_width, d_model}, out_std, dtype, generator);
  auto filled = [&](int64_t n, double value) {
    return at::full({n}, value, at::TensorOptions().dtype(dtype)).set_requires_grad(true);
  };
  if (options.qkv_bias) b_qkv_ = filled(w_qkv_.size(1), 0.0);
  if (qk_norm_ == QkNorm::kHead) {
    q_norm_ = filled(head_width, 1.0);
    k_norm_ = filled(head_width, 1.0);
  } else if (qk_norm_ == QkNorm::kProjection) {
    q_norm_ = filled(n_heads * head_width, 1.0);
    k_norm_ = filled(n_kv_heads * head_width, 1.0);
  }
  if (rotary) {
    const int64_t half = head_width / 2;
    auto in_double = at::TensorOptions().dtype(at::kDouble);
    at::Tensor inv_freq = at::pow(options.rope_theta, -at::arange(half, in_double) / double(half));
    at::Tensor angles = at::outer(at::arange(max_seq_len, in_double), inv_freq);
    cos_Ld_ = at::cos(angles).to(dtype);
    sin_Ld_ = at::sin(angles).to(dtype);
  }
}

ParameterList CausalSelfAttention::parameters() const {
  ParameterList params{{"w_qkv", w_qkv_}};
  if (b_qkv_.defined()) params.push_back({"b_qkv", b_qkv_});
  if (q_norm_.defined()) {
    params.push_back({"q_norm", q_norm_});
    params.push_back({"k_norm", k_norm_});
  }
  params.push_back({"w_out", w_out_});
  return params;
}

void CausalSelfAttention::to(at::Device device) {
  if (!rotary_) return;
  cos_Ld_ = cos_Ld_.to(device);
  sin_Ld_ = sin_Ld_.to(device);
}

at::Tensor CausalSelfAttention::rotate(const at::Tensor& x_BHLd) const {
  const int64_t length = x_BHLd.size(2), half = x_BHLd.size(3) / 2;
  // In the tables' precision only when x has it: under bf16 autocast q, k and v must share
  // one dtype for the attention kernel.
  at::Tensor cos = cos_Ld_.narrow(0, 0, length).to(x_BHLd.scalar_type());
  at::Tensor sin = sin_Ld_.narrow(0, 0, length).to(x_BHLd.scalar_type());
  at::Tensor x1 = x_BHLd.narrow(-1, 0, half), x2 = x_BHLd.narrow(-1, half, half);
  return at::cat({x1 * cos - x2 * sin, x1 * sin + x2 * cos}, -1);
}

at::Tensor CausalSelfAttention::forward(const at::Tensor& x_BLD,
                                        const AttentionDropout& dropout) const {
  const int64_t batch = x_BLD.size(0), length = x_BLD.size(1);
  const int64_t head_width = head_width_;
  // [B, L, (H + 2K) d] -> [B, H, L, d] and 2 x [B, K, L, d]
  at::Tensor qkv = at::matmul(x_BLD, w_qkv_);
  if (b_qkv_.defined()) qkv = qkv + b_qkv_.to(qkv.scalar_type());  // bf16 under autocast
  if (qk_norm_ == QkNorm::kProjection) {  // over all of q's heads, and all of k's
    const std::vector<at::Tensor> parts =
        qkv.split({n_heads_ * head_width, n_kv_heads_ * head_width, n_kv_heads_ * head_width}, -1);
    qkv = at::cat(
        {rms_norm(parts[0], q_norm_, norm_eps_), rms_norm(parts[1], k_norm_, norm_eps_), parts[2]},
        -1);
  }
  const at::Tensor qkv_BLHd = qkv.view({batch, length, n_heads_ + 2 * n_kv_heads_, head_width});
  const std::vector<at::Tensor> heads =
      qkv_BLHd.split({n_heads_, n_kv_heads_, n_kv_heads_}, /*dim=*/2);
  at::Tensor q = heads[0], k = heads[1], v = heads[2].transpose(1, 2);
  if (qk_norm_ == QkNorm::kHead) {  // each head over its own d values
    q = rms_norm(q, q_norm_, norm_eps_);
    k = rms_norm(k, k_norm_, norm_eps_);
  }
  q = q.transpose(1, 2);
  k = k.transpose(1, 2);
  if (rotary_) {
    q = rotate(q);
    k = rotate(k);
  }
  if (n_kv_heads_ != n_heads_) {  // query head h reads key/value head h / (H / K)
    k = k.repeat_interleave(n_heads_ / n_kv_heads_, /*dim=*/1);
    v = v.repeat_interleave(n_heads_ / n_kv_heads_, /*dim=*/1);
  }
  at::Tensor attended;
  if (dropout.p > 0) {
    // Written out, so that the dropped probabilities are the keyed ones, not the fused
    // kernel's own draws (which follow the global generator and the layout).
    const at::Tensor causal_LL =
        at::ones({length, length}, x_BLD.options().dtype(at::kBool)).triu(1);
    const at::Tensor logits_BHLL =
        at::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(head_width));
    const at::Tensor probs_BHLL = at::softmax(
        logits_BHLL.masked_fill(causal_LL, -std::numeric_limits<double>::infinity()), -1);
    const at::Tensor counters = block_counters(dropout.first_sequence * n_heads_, batch * n_heads_,
                                               length * length, x_BLD.device())
                                    .view({batch, n_heads_, length, length});
    attended = at::matmul(keyed_dropout(probs_BHLL, dropout.p, dropout.key, counters), v);
  } else {
    attended = at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{},
                                                /*dropout_p=*/0.0, /*is_causal=*/true);
  }
  return at::matmul(attended.transpose(1, 2).reshape({batch, length, n_heads_ * head_width}),
                    w_out_);
}

}  // namespace triage
