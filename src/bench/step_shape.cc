// A config's training step in the scaling model's terms; see the header.
#include "bench/step_shape.h"

#include "bench/memory_model.h"
#include "model/transformer.h"

namespace triage {

model::StepShape step_shape(const Config& c, int64_t tokens_per_rank, int64_t ep) {
  model::StepShape s;
  const int64_t D = c.model.d_model, E = c.moe.num_experts;
  const int64_t matrices = c.moe.expert_type == ExpertType::kSwiglu ? 3 : 2;
  s.moe = {tokens_per_rank, D, c.moe.d_expert, E, c.moe.top_k, matrices};
  s.layers = c.model.n_layers;
  s.kv_share = double(c.model.kv_heads()) / double(c.model.n_heads);
  s.attention_share = double(c.model.n_heads * c.model.head_width()) / double(D);
  for (int64_t l = 0; l < c.model.n_layers; ++l) s.moe_layers += is_moe_block(c.moe, l);
  s.dense_ffn_layers = s.layers - s.moe_layers;
  s.dense_ffn_hidden = c.model.d_ff;
  s.shared_expert_hidden = c.moe.num_shared_experts * c.moe.d_expert;
  s.seq_len = c.data.seq_len;
  s.vocab = c.model.vocab_size;
  // The parameter counts are the memory estimate's, one count for both models.
  const MemoryEstimate counts = estimate_memory(c, {ep, ep});
  s.replicated_parameters = counts.replicated_parameters;
  s.expert_parameters_per_rank = counts.expert_parameters;
  s.overlap_grad_sync = c.train.overlap_grad_sync;
  s.grad_bucket_bytes = c.train.grad_bucket_mb * double(1 << 20);
  s.shard_optimizer = c.train.shard_optimizer;
  s.parameter_bytes = c.train.dtype == DType::kFloat64 ? 8 : 4;
  s.gradient_wire_bytes = c.train.grad_reduce_dtype == GradReduceDtype::kBf16 ? 2
                          : c.train.dtype == DType::kFloat64                  ? 8
                                                                              : 0;
  s.micro_batches = c.train.grad_accum_steps;
  s.recompute_experts = c.train.recompute == Recompute::kExperts;
  s.recompute_blocks = c.train.recompute == Recompute::kBlock;
  return s;
}

}  // namespace triage
