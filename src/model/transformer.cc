// Builds the blocks in a fixed order from one seeded generator, so that every rank (and
// the one-rank reference) draws the same replicated weights.
#include "model/transformer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <cmath>

#include "common/counter_random.h"
#include "model/recompute.h"
#include "model/rms_norm.h"
#include "parallel/watchdog.h"

namespace triage {

namespace {
// The purposes of a block's dropout draws, so that no two share a mask.
constexpr uint64_t kAttentionDropout = 1, kAttentionOutput = 2, kFfnOutput = 3;
}  // namespace

bool is_moe_block(const MoeConfig& moe, int64_t layer) {
  return layer >= moe.first_dense_layers &&
         (layer - moe.first_dense_layers) % moe.every_n_layers == 0;
}

Transformer::Transformer(const Config& config, at::ScalarType dtype, Communicator* ep,
                         Communicator* world)
    : config_(config) {
  const ModelConfig& m = config.model;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(config.train.seed);
  auto ones = [&](int64_t n) {
    return at::ones({n}, at::TensorOptions().dtype(dtype)).set_requires_grad(true);
  };
  // Residual output projections scaled by 1/sqrt(2 * layers), as GPT-2 does.
  const double out_std = kInitStd / std::sqrt(2.0 * double(m.n_layers));
  const ExpertType ffn_type = config.moe.expert_type;

  embedding_VD_ = normal_parameter({m.vocab_size, m.d_model}, kInitStd, dtype, gen);
  if (m.positions == Positions::kLearned)
    positions_LD_ = normal_parameter({m.max_seq_len, m.d_model}, kInitStd, dtype, gen);
  for (int64_t layer = 0; layer < m.n_layers; ++layer) {
    Block block;
    block.attention_norm = ones(m.d_model);
    block.ffn_norm = ones(m.d_model);
    block.attention = std::make_unique<CausalSelfAttention>(
        m.d_model, m.n_heads,
        CausalSelfAttention::Options{m.kv_heads(), m.qkv_bias, m.qk_norm, m.norm_eps, m.rope_theta,
                                     m.head_dim},
        m.positions == Positions::kRotary, m.max_seq_len, out_std, dtype, gen);
    if (is_moe_block(config.moe, layer)) {
      // Each MoE layer gets its own seed, so its gate and experts differ from the others'.
      const uint64_t layer_seed = uint64_t(config.train.seed) + 7919ull * uint64_t(layer + 1);
      block.moe = std::make_unique<MoeLayer>(config.moe, m.d_model, dtype, layer_seed, ep, world);
      if (config.moe.num_shared_experts > 0)
        block.shared = std::make_unique<FeedForward>(
            m.d_model, config.moe.num_shared_experts * config.moe.d_expert, ffn_type, out_std,
            dtype, gen);
      if (config.moe.shared_expert_gate)
        block.shared_gate_D1 = normal_parameter({m.d_model, 1}, kInitStd, dtype, gen);
    } else {
      block.dense = std::make_unique<FeedForward>(m.d_model, m.d_ff, ffn_type, out_std, dtype, gen);
    }
    blocks_.push_back(std::move(block));
  }
  final_norm_ = ones(m.d_model);
  if (config.train.loss != Loss::kClassify && !m.tie_embeddings)
    lm_head_DV_ = normal_parameter({m.d_model, m.vocab_size}, kInitStd, dtype, gen);
  if (m.num_classes > 0) {
    class_head_DC_ = normal_parameter({m.d_model, m.num_classes}, kInitStd, dtype, gen);
    class_bias_C_ =
        at::zeros({m.num_classes}, at::TensorOptions().dtype(dtype)).set_requires_grad(true);
  }
}

ModelOutput Transformer::forward(const at::Tensor& tokens_BL, const at::Tensor& real_BL,
                                 bool training, int64_t first_token) {
  const double eps = config_.model.norm_eps;
  at::Tensor x = at::embedding(embedding_VD_, tokens_BL);
  if (positions_LD_.defined()) x = x + positions_LD_.narrow(0, 0, tokens_BL.size(1));

  ModelOutput out;
  out.balance_loss = at::zeros({}, x.options());
  out.z_loss = at::zeros({}, x.options());
  // train.recompute block: while training, each block keeps only its input for backward.
  const bool replay_blocks =
      training && at::GradMode::is_enabled() && config_.train.recompute == Recompute::kBlock;
  int64_t moe_index = 0;
  for (int64_t layer = 0; layer < int64_t(blocks_.size()); ++layer) {
    const bool moe = bool(blocks_[size_t(layer)].moe);
    BlockOutput block;
    if (replay_blocks) {
      // The first run's statistics are the step's; the replay's are dropped.
      auto first_run = std::make_shared<BlockOutput>();
      const std::vector<at::Tensor> outs =
          recompute_in_backward(x, [this, layer, moe_index, training, first_token, real_BL,
                                    first_run](const at::Tensor& input, bool replay) {
            BlockOutput o = run_block(layer, moe_index, input, training, first_token, real_BL);
            std::vector<at::Tensor> tensors{o.x, o.balance_loss, o.z_loss};
            if (!replay) *first_run = std::move(o);
            return tensors;
          });
      block = std::move(*first_run);
      block.x = outs[0];
      block.balance_loss = outs[1];
      block.z_loss = outs[2];
    } else {
      block = run_block(layer, moe_index, x, training, first_token, real_BL);
    }
    x = block.x;
    if (!moe) continue;
    ++moe_index;
    out.balance_loss = out.balance_loss + block.balance_loss;
    out.z_loss = out.z_loss + block.z_loss;
    out.moe_stats.push_back(std::move(block.stats));
    out.top_expert_BL.push_back(block.top_expert_T.view(tokens_BL.sizes()));
  }
  x = rms_norm(x, final_norm_, eps);
  if (lm_head_DV_.defined())
    out.lm_logits_BLV = at::matmul(x, lm_head_DV_);
  else if (config_.model.tie_embeddings && config_.train.loss != Loss::kClassify)
    out.lm_logits_BLV = at::matmul(x, embedding_VD_.t());
  if (class_head_DC_.defined()) {
    at::Tensor real = real_BL.to(x.scalar_type()).unsqueeze(-1);
    at::Tensor pooled_BD = (x * real).sum(1) / real.sum(1).clamp_min(1.0);
    out.class_logits_BC = at::matmul(pooled_BD, class_head_DC_) + class_bias_C_;
  }
  return out;
}

Transformer::BlockOutput Transformer::run_block(int64_t layer, int64_t moe_index,
                                                const at::Tensor& x_in, bool training,
                                                int64_t first_token, const at::Tensor& real_BL) {
  const double eps = config_.model.norm_eps;
  const ModelConfig& m = config_.model;
  Block& block = blocks_[size_t(layer)];
  const int64_t length = x_in.size(1);
  AttentionDropout attention_dropout;
  if (training && m.attention_dropout > 0)
    attention_dropout = {m.attention_dropout, draw_key(layer, kAttentionDropout),
                         length > 0 ? first_token / length : 0};
  at::Tensor attended =
      block.attention->forward(rms_norm(x_in, block.attention_norm, eps), attention_dropout);
  if (training) attended = residual_dropout(attended, layer, kAttentionOutput, first_token);
  at::Tensor x = x_in + attended;
  at::Tensor h = rms_norm(x, block.ffn_norm, eps);
  BlockOutput result;
  result.balance_loss = at::zeros({}, x.options());
  result.z_loss = at::zeros({}, x.options());
  if (block.dense) {
    at::Tensor ffn = block.dense->forward(h);
    if (training) ffn = residual_dropout(ffn, layer, kFfnOutput, first_token);
    result.x = x + ffn;
    return result;
  }
  watchdog::Scope scope("MoE layer " + std::to_string(moe_index));
  // The shared experts need only h: they compute while the routed rows travel.
  at::Tensor shared;
  InFlightWork shared_experts;
  if (block.shared)
    shared_experts = [&] {
      shared = block.shared->forward(h);
      if (block.shared_gate_D1.defined())
        shared = shared * at::sigmoid(at::matmul(h, block.shared_gate_D1));
    };
  MoeOutput moe = block.moe->forward(h, training, first_token, real_BL, shared_experts);
  at::Tensor ffn = shared.defined() ? moe.y + shared : moe.y;
  if (training) ffn = residual_dropout(ffn, layer, kFfnOutput, first_token);
  result.x = x + ffn;
  result.balance_loss = moe.balance_loss.to(x.scalar_type());
  result.z_loss = moe.z_loss.to(x.scalar_type());
  result.stats = std::move(moe.stats);
  result.top_expert_T = moe.top_expert_T;
  return result;
}

void Transformer::set_draw_clock(int64_t step, int64_t micro_batch) {
  step_ = step;
  micro_batch_ = micro_batch;
  for (MoeLayer* layer : moe_layers()) layer->set_draw_clock(step, micro_batch);
}

uint64_t Transformer::draw_key(int64_t layer, uint64_t purpose) const {
  return random_key({uint64_t(config_.train.seed), uint64_t(layer), uint64_t(step_),
                     uint64_t(micro_batch_), purpose});
}

at::Tensor Transformer::residual_dropout(const at::Tensor& branch_BLD, int64_t layer,
                                         uint64_t purpose, int64_t first_token) const {
  const double p = config_.model.residual_dropout;
  if (p == 0) return branch_BLD;
  const int64_t rows = branch_BLD.size(0) * branch_BLD.size(1), width = branch_BLD.size(2);
  const at::Tensor counters =
      block_counters(first_token, rows, width, branch_BLD.device()).view(branch_BLD.sizes());
  return keyed_dropout(branch_BLD, p, draw_key(layer, purpose), counters);
}

ParameterList Transformer::parameters() const {
  ParameterList params{{"embedding", embedding_VD_}};
  if (positions_LD_.defined()) params.push_back({"positions", positions_LD_});
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& block = blocks_[i];
    const std::string prefix = "layers." + std::to_string(i);
    params.push_back({prefix + ".attention_norm", block.attention_norm});
    append_parameters(params, prefix + ".attention", block.attention->parameters());
    params.push_back({prefix + ".ffn_norm", block.ffn_norm});
    if (block.dense) append_parameters(params, prefix + ".dense", block.dense->parameters());
    if (block.moe) append_parameters(params, prefix + ".moe", block.moe->parameters());
    if (block.shared) append_parameters(params, prefix + ".shared", block.shared->parameters());
    if (block.shared_gate_D1.defined())
      params.push_back({prefix + ".shared_gate", block.shared_gate_D1});
  }
  params.push_back({"final_norm", final_norm_});
  if (lm_head_DV_.defined()) params.push_back({"lm_head", lm_head_DV_});
  if (class_head_DC_.defined()) {
    params.push_back({"class_head", class_head_DC_});
    params.push_back({"class_bias", class_bias_C_});
  }
  return params;
}

BufferList Transformer::buffers() const {
  BufferList buffers;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    if (!blocks_[i].moe) continue;
    for (const auto& b : blocks_[i].moe->buffers())
      buffers.push_back({"layers." + std::to_string(i) + ".moe." + b.name, b.tensor});
  }
  return buffers;
}

void Transformer::to(at::Device device) {
  c10::NoGradGuard no_grad;
  move_tensors(parameters(), device);
  move_tensors(buffers(), device);
  for (Block& block : blocks_) block.attention->to(device);
}

std::vector<MoeLayer*> Transformer::moe_layers() {
  std::vector<MoeLayer*> layers;
  for (Block& block : blocks_)
    if (block.moe) layers.push_back(block.moe.get());
  return layers;
}

}  // namespace triage
