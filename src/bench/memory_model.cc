// Per-rank memory by arithmetic; see the header. T tokens per rank per micro-batch, D model
// width, E experts, k top-k, H expert width, F dense FFN width, V vocabulary.
#include "bench/memory_model.h"

#include <algorithm>

#include "model/transformer.h"
#include "train/grad_sync.h"

namespace triage {

MemoryEstimate estimate_memory(const Config& c, const MemoryLayout& layout) {
  const ModelConfig& m = c.model;
  const MoeConfig& moe = c.moe;
  const int64_t P = std::max<int64_t>(1, layout.ranks),
                ep = std::clamp<int64_t>(layout.expert, 1, P);
  const double D = double(m.d_model), E = double(moe.num_experts), H = double(moe.d_expert);
  const double k = double(moe.top_k), V = double(m.vocab_size);
  const double kv_share = double(m.kv_heads()) / double(m.n_heads);  // grouped-query: < 1
  // Attention's width, H d: d_model unless model.head_dim widens the heads.
  const double A = double(m.n_heads * m.head_width());
  const bool swiglu = moe.expert_type == ExpertType::kSwiglu;
  const double matrices = swiglu ? 3 : 2;
  const double param_bytes = c.train.dtype == DType::kFloat64 ? 8 : 4;
  // Under bf16 autocast the matmuls' outputs are bf16; the residual stream, norms, router
  // and losses stay float32.
  const double act_bytes = c.train.precision == Precision::kBf16 ? 2 : param_bytes;

  int64_t moe_layers = 0;
  for (int64_t l = 0; l < m.n_layers; ++l) moe_layers += is_moe_block(moe, l);
  const double dense_layers = double(m.n_layers - moe_layers), L_moe = double(moe_layers);
  const double shared_H = double(moe.num_shared_experts) * H;

  MemoryEstimate out;
  out.expert_parameters = L_moe * double(moe.num_experts / ep) * matrices * D * H;
  out.replicated_parameters =
      V * D + (m.positions == Positions::kLearned ? double(m.max_seq_len) * D : 0) +
      double(m.n_layers) *
          ((2 + 2 * kv_share) * D * A + 2 * D + (m.qkv_bias ? (1 + 2 * kv_share) * A : 0) +
           (m.qk_norm == QkNorm::kHead         ? 2 * double(m.head_width())
            : m.qk_norm == QkNorm::kProjection ? (1 + kv_share) * A
                                               : 0)) +
      dense_layers * matrices * D * double(m.d_ff) +
      L_moe * ((moe.noise == RouterNoise::kShazeer ? 2 : 1) * E * D + matrices * D * shared_H +
               (moe.shared_expert_gate ? D : 0)) +
      D + (c.train.loss != Loss::kClassify && !m.tie_embeddings ? D * V : 0) +
      (m.num_classes > 0 ? (D + 1) * double(m.num_classes) : 0);
  const double local_parameters = out.replicated_parameters + out.expert_parameters;
  out.parameters = local_parameters * param_bytes;
  out.gradients = out.parameters;
  // The sync's buffers (grad_sync.cc): the gradients are views into the buckets, so what
  // it adds is what its reduce-scatters in flight receive (at most kReduceBytesInFlight, at
  // least one bucket) and, with bf16 on the wire, the bucket's narrowed copy; sharded, each
  // bucket's summed chunk (the rank's 1/group of it) stays until the update.
  const double wire = c.train.grad_reduce_dtype == GradReduceDtype::kBf16 ? 2 : param_bytes;
  const double bucket_elements = c.train.grad_bucket_mb * double(1 << 20) / param_bytes;
  const double reduced_elements =
      (P > 1 ? out.replicated_parameters : 0) + (P / ep > 1 ? out.expert_parameters : 0);
  const double in_flight =
      std::min(reduced_elements, std::max(bucket_elements, double(kReduceBytesInFlight) / wire));
  out.sync_buffers = in_flight * (wire + (wire < param_bytes ? wire : 0));
  if (c.train.shard_optimizer)  // (a group of one rank's chunk is the bucket itself)
    out.sync_buffers += ((P > 1 ? out.replicated_parameters / double(P) : 0) +
                         (P / ep > 1 ? out.expert_parameters / double(P / ep) : 0)) *
                        param_bytes;
  const double moment_elements =
      c.train.shard_optimizer
          ? out.replicated_parameters / double(P) + out.expert_parameters / double(P / ep)
          : local_parameters;
  out.optimizer = 2 * moment_elements * param_bytes;
  // AdamW's step makes two temporaries of one tensor at a time (sqrt of the second moment,
  // then its bias-corrected copy): the largest parameter unsharded (a stacked expert
  // matrix, or the embedding); sharded, a bucket's chunk, its parameters' copy and the
  // all-gathered bucket.
  const double largest =
      std::max({double(moe.num_experts / ep) * D * H, V * D, D * double(m.d_ff)});
  const double bucket = std::min(c.train.grad_bucket_mb * double(1 << 20) / param_bytes,
                                 std::max(out.replicated_parameters, out.expert_parameters));
  out.optimizer_step =
      (c.train.shard_optimizer ? 3 * bucket / double(std::max<int64_t>(1, P / ep)) + bucket
                               : 2 * largest) *
      param_bytes;

  // Activations autograd keeps for backward, per micro-batch.
  const double T = layout.tokens_per_rank > 0
                       ? double(layout.tokens_per_rank)
                       : double(c.train.batch_size) / double(P) * double(c.data.seq_len);
  out.tokens_per_rank = int64_t(T);
  const double TD = T * D;
  // Attention block: its input and normed input, the qkv projection, rotated q and k, keys
  // and values repeated per query head (grouped-query attention), the
  // attention output and its contiguous copy for the output projection.
  const double TA = T * A;
  const double attention =
      (2 * TD) * param_bytes +
      ((1 + 2 * kv_share) + (1 + kv_share) + (kv_share < 1 ? 2 : 0) + 2) * TA * act_bytes;
  // The FFN's input and normed input; a dense SwiGLU keeps x W_in, x W_up, silu and the
  // product (GELU: pre-activation and output).
  const double ffn_input = 2 * TD * param_bytes;
  auto dense_ffn = [&](double hidden) { return (swiglu ? 4 : 2) * T * hidden * act_bytes; };
  // MoE: router logits and probabilities (float32), the rows sent (a row per choice) and
  // received (balanced: the same number; at most max_receive_factor x T x k), the experts'
  // pre-activations (none under recompute: experts) and outputs.
  const double sent_rows = T * k;
  const double received_rows = moe.max_receive_factor > 0
                                   ? std::min(moe.max_receive_factor * T * k, double(ep) * T * k)
                                   : sent_rows;
  const bool keep_hidden = c.train.recompute != Recompute::kExperts;
  const double moe_layer = 2 * T * E * 4 + (sent_rows + 2 * received_rows) * D * act_bytes +
                           (keep_hidden ? (swiglu ? 2 : 1) * received_rows * H * act_bytes : 0);
  // Kept by every MoE layer, or (block recompute) by the one being replayed.
  const double receiving_layers =
      c.train.recompute == Recompute::kBlock ? std::min(1.0, L_moe) : L_moe;
  out.receive_buffers = receiving_layers * received_rows * D * act_bytes;
  // The head: final norm, logits and their log-softmax in float32.
  const double head = 2 * TD * param_bytes + (c.train.loss != Loss::kClassify ? 2 * T * V * 4 : 0);
  const double dense_block = attention + ffn_input + dense_ffn(double(m.d_ff));
  const double moe_block =
      attention + ffn_input + moe_layer + (shared_H > 0 ? dense_ffn(shared_H) : 0);
  if (c.train.recompute == Recompute::kBlock)  // each block's input, and one block replayed
    out.activations = double(m.n_layers) * TD * param_bytes +
                      std::max(dense_layers > 0 ? dense_block : 0.0, L_moe > 0 ? moe_block : 0.0) +
                      head;
  else
    out.activations = dense_layers * dense_block + L_moe * moe_block + head;
  out.runtime = layout.runtime;
  return out;
}

double default_runtime_bytes(const Config& config) {
  return config.train.device == DeviceKind::kCuda ? 2.0 * double(1ull << 30)
                                                  : 384.0 * double(1 << 20);
}

std::vector<std::pair<std::string, std::string>> memory_rows(const MemoryEstimate& m,
                                                             double device_bytes) {
  std::vector<std::pair<std::string, std::string>> rows = {
      {"parameters", bytes_text(m.parameters)},
      {"gradients", bytes_text(m.gradients)},
      {"gradient sync buffers", bytes_text(m.sync_buffers)},
      {"optimizer state", bytes_text(m.optimizer)},
      {"optimizer step", bytes_text(m.optimizer_step)},
      {"activations", bytes_text(m.activations) + " (" + std::to_string(m.tokens_per_rank) +
                          " tokens; exchange receive buffers " + bytes_text(m.receive_buffers) +
                          ")"},
      {"runtime", bytes_text(m.runtime)},
      {"total", bytes_text(m.total())}};
  if (device_bytes > 0)
    rows.push_back({"fits " + bytes_text(device_bytes),
                    m.total() <= device_bytes
                        ? "yes"
                        : "no, over by " + bytes_text(m.total() - device_bytes)});
  return rows;
}

}  // namespace triage
