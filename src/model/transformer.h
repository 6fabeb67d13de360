// The decoder-only MoE transformer:
//   tokens -> embedding (+ learned positions) -> n_layers x block -> RMSNorm -> heads
//   block:  x += attention(RMSNorm(x));  x += ffn(RMSNorm(x))
// where ffn is the expert-parallel MoE layer (plus shared experts, if any) or a dense FFN,
// per moe.first_dense_layers and moe.every_n_layers. Heads: the LM head (next-token logits)
// and, with model.num_classes > 0, a classification head on the mean over real tokens.
// Legend: B batch, L length, D model width, V vocabulary, C classes.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <optional>
#include <vector>

#include "config/config.h"
#include "model/attention.h"
#include "model/feed_forward.h"
#include "moe/moe_layer.h"
#include "parallel/communicator.h"

namespace triage {

// True when block `layer` (0-based) gets an MoE FFN under `moe`'s placement keys.
bool is_moe_block(const MoeConfig& moe, int64_t layer);

struct ModelOutput {
  at::Tensor lm_logits_BLV;               // defined unless the loss is classification only
  at::Tensor class_logits_BC;             // defined when model.num_classes > 0
  at::Tensor balance_loss;                // summed over MoE blocks, scalar
  at::Tensor z_loss;                      // summed over MoE blocks, scalar
  std::vector<MoeStats> moe_stats;        // per MoE block, in order
  std::vector<at::Tensor> top_expert_BL;  // per MoE block: each token's first choice
};

class Transformer {
 public:
  // ep: the expert-parallel group (nullptr: all experts local, the reference); world: all
  // ranks, over which the global balance loss is taken. Every rank builds identical
  // replicated weights from train.seed; experts depend on (seed, id) only.
  Transformer(const Config& config, at::ScalarType dtype, Communicator* ep, Communicator* world);

  // tokens_BL: int64 ids; real_BL: 1 for real tokens, 0 for padding (for mean pooling).
  // first_token: the global index of tokens_BL's first token (rank r of a batch split in
  // slices passes r * B * L), which keeps moe.routing_override layout-independent.
  ModelOutput forward(const at::Tensor& tokens_BL, const at::Tensor& real_BL, bool training,
                      int64_t first_token = 0);

  // Which (optimizer step, micro-batch) keys this forward's training-time draws: dropout
  // masks and router noise (the MoE layers are told too).
  void set_draw_clock(int64_t step, int64_t micro_batch);

  ParameterList parameters() const;
  BufferList buffers() const;  // persistent, untrained state (the MoE layers' expert bias)
  std::vector<MoeLayer*> moe_layers();

  // Moves parameters (in place: the same leaf tensors, so optimizers built on them stay
  // valid) and buffers to `device`. Weights are always drawn on the CPU first, so a GPU
  // run starts from exactly the CPU run's weights.
  void to(at::Device device);

 private:
  struct Block {
    at::Tensor attention_norm, ffn_norm;
    std::unique_ptr<CausalSelfAttention> attention;
    std::unique_ptr<FeedForward> dense;   // dense block
    std::unique_ptr<MoeLayer> moe;        // MoE block
    std::unique_ptr<FeedForward> shared;  // MoE block with shared experts
    at::Tensor shared_gate_D1;            // moe.shared_expert_gate: sigmoid(h w) scales them
  };

  // One block's results; an MoE block fills the losses (scalars), statistics and choices.
  struct BlockOutput {
    at::Tensor x, balance_loss, z_loss;
    MoeStats stats;
    at::Tensor top_expert_T;
  };
  // Block `layer` (the `moe_index`-th MoE block, if it is one) on x [B, L, D].
  BlockOutput run_block(int64_t layer, int64_t moe_index, const at::Tensor& x, bool training,
                        int64_t first_token, const at::Tensor& real_BL);
  // Residual dropout on one block's branch output [B, L, D] (`purpose`: attention or FFN).
  at::Tensor residual_dropout(const at::Tensor& branch_BLD, int64_t layer, uint64_t purpose,
                              int64_t first_token) const;
  uint64_t draw_key(int64_t layer, uint64_t purpose) const;

  Config config_;
  int64_t step_ = 0, micro_batch_ = 0;
  at::Tensor embedding_VD_, positions_LD_, final_norm_, lm_head_DV_, class_head_DC_, class_bias_C_;
  std::vector<Block> blocks_;
};

}  // namespace triage
