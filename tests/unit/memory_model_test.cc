// The per-rank memory estimate's arithmetic, checked against what the code allocates: its
// parameter count against a built model's, its sharded moments against the ratio the
// sharded optimizer keeps, and recompute against the pre-activations it drops.
#include <gtest/gtest.h>

#include "bench/memory_model.h"
#include "model/transformer.h"

namespace triage {
namespace {

int64_t built_parameters(const Config& config) {
  Transformer model(config, at::kFloat, nullptr, nullptr);
  int64_t count = 0;
  for (const auto& p : model.parameters()) count += p.tensor.numel();
  return count;
}

TEST(MemoryModel, CountsTheParametersABuiltModelHas) {
  for (const std::vector<std::string>& sets :
       {std::vector<std::string>{},
        {"model.positions=learned", "moe.num_shared_experts=2", "moe.first_dense_layers=1",
         "model.n_layers=3", "moe.expert_type=gelu"},
        {"model.num_classes=5", "train.loss=lm+classify", "moe.noise=shazeer"},
        {"model.n_kv_heads=2", "model.qkv_bias=true", "model.qk_norm=head"},
        {"model.n_kv_heads=2", "model.qk_norm=projection"},
        {"model.tie_embeddings=true", "model.rope_theta=1e6"},
        {"model.head_dim=32", "model.n_kv_heads=2", "model.qk_norm=head"},
        {"model.head_dim=32", "model.qk_norm=projection", "model.qkv_bias=true"},
        {"moe.num_shared_experts=2", "moe.shared_expert_gate=true"}}) {
    Config config = default_config(sets);
    const MemoryEstimate m = estimate_memory(config, {1, 1, 0});
    EXPECT_EQ(int64_t(m.replicated_parameters + m.expert_parameters), built_parameters(config))
        << testing::PrintToString(sets);
    EXPECT_EQ(m.parameters, 4 * (m.replicated_parameters + m.expert_parameters));
  }
}

TEST(MemoryModel, ShardingSplitsTheMomentsOverTheGroupsThatSyncThem) {
  Config config = default_config({"train.shard_optimizer=true", "moe.num_experts=8"});
  // 8 ranks at EP 2: replicated moments over 8 ranks, each expert's over its 4 copies.
  const MemoryEstimate sharded = estimate_memory(config, {8, 2, 0});
  EXPECT_DOUBLE_EQ(sharded.optimizer,
                   2 * 4 * (sharded.replicated_parameters / 8 + sharded.expert_parameters / 4));
  config.train.shard_optimizer = false;
  const MemoryEstimate whole = estimate_memory(config, {8, 2, 0});
  EXPECT_DOUBLE_EQ(whole.optimizer,
                   2 * 4 * (whole.replicated_parameters + whole.expert_parameters));
}

TEST(MemoryModel, RecomputeDropsTheExpertPreactivations) {
  Config config = default_config({"train.batch_size=8", "data.seq_len=16"});
  const MemoryEstimate kept = estimate_memory(config, {2, 2, 0});
  config.train.recompute = Recompute::kExperts;
  const MemoryEstimate recomputed = estimate_memory(config, {2, 2, 0});
  // 4 sequences of 16 tokens per rank, top-k rows each received (balanced), gate and up of
  // d_expert float32 values per row, in every MoE layer.
  const double rows = 4.0 * 16 * double(config.moe.top_k);
  const double moe_layers = double(config.model.n_layers);  // every layer is MoE by default
  EXPECT_DOUBLE_EQ(kept.activations - recomputed.activations,
                   moe_layers * rows * 2 * double(config.moe.d_expert) * 4);
}

TEST(MemoryModel, BlockRecomputeKeepsOneResidualPerLayer) {
  // Each further layer adds only its block's input, 4 sequences x 16 tokens x d_model
  // float32 values per rank; the replayed block and the head stay the same.
  auto activations = [](const std::string& layers) {
    Config config = default_config({"train.batch_size=8", "data.seq_len=16",
                                    "train.recompute=block", "model.n_layers=" + layers});
    return estimate_memory(config, {2, 2, 0}).activations;
  };
  const Config config = default_config({});
  EXPECT_DOUBLE_EQ(activations("5") - activations("2"),
                   3 * 4.0 * 16 * double(config.model.d_model) * 4);
}

TEST(MemoryModel, SyncBuffersHoldTheReduceScattersInFlightOnly) {
  // Small: every gradient fits in flight at once; the reduce-scatters receive each
  // bucket's worth in float32 (gradients are the buckets' views: no copy).
  Config small = default_config({"moe.num_experts=8"});
  const MemoryEstimate s = estimate_memory(small, {4, 4, 0});
  EXPECT_DOUBLE_EQ(s.sync_buffers, 4 * s.replicated_parameters);  // experts: EP = world
  // Large (d_model 4096): at most 256 MiB receive at once, and a bf16 copy of as much.
  Config large =
      default_config({"model.d_model=4096", "model.n_heads=32", "moe.d_expert=8192",
                      "model.n_layers=4", "moe.num_experts=8", "train.grad_reduce_dtype=bf16"});
  const MemoryEstimate l = estimate_memory(large, {16, 8, 0});
  EXPECT_DOUBLE_EQ(l.sync_buffers, 2.0 * (256 << 20));
}

}  // namespace
}  // namespace triage
