// What export and import share: the transformers classes' layout facts.
//   Mixtral (MixtralForCausalLM): softmax top-k routing with renormalised gates, SwiGLU
//     experts, every block MoE, no shared experts;
//   Qwen2-MoE (Qwen2MoeForCausalLM): the same, plus dense blocks (mlp_only_layers), shared
//     experts, and gates without renormalisation (norm_topk_prob: false).
// Both: rotary positions (LLaMA's half-split RoPE, any theta, no scaling), RMSNorm, causal
// attention with grouped key/value heads (Qwen2-MoE: with q, k, v biases), a tied or
// untied LM head (tie_word_embeddings: no lm_head.weight). The tensors carry the names and
// [out, in] orientation of the classes' checkpoints on the Hub (one tensor per expert),
// which every transformers version since Mixtral's release loads.
#pragma once

#include <ATen/ATen.h>

#include <sstream>
#include <string>

namespace triage::hf {

// Triage keeps weights as [in, out] (x @ w); transformers' nn.Linear keeps [out, in]: the
// same transpose goes either way.
inline at::Tensor transposed(const at::Tensor& w) { return w.t().contiguous(); }

// A config number in the fewest digits that read back as the same double (10000, 1e-06,
// 1234567.5), for messages and for the config an import writes.
inline std::string number(double value) {
  for (int digits = 6;; ++digits) {
    std::ostringstream text;
    text.precision(digits);
    text << value;
    if (digits >= 17 || std::stod(text.str()) == value) return text.str();
  }
}

}  // namespace triage::hf
