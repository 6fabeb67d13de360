// The MoE transformer's structure and the properties a language model must have.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "model/recompute.h"
#include "model/transformer.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;

Config small_config() {
  Config c =
      default_config({"model.vocab_size=24", "model.d_model=8", "model.n_heads=2", "model.d_ff=12",
                      "model.n_layers=3", "model.max_seq_len=10", "moe.num_experts=4",
                      "moe.d_expert=6", "train.dtype=float64", "data.seq_len=10"});
  return c;
}

std::set<std::string> names_of(const ParameterList& params) {
  std::set<std::string> names;
  for (const auto& p : params) names.insert(p.name);
  return names;
}

TEST(MoePlacement, SkipsTheFirstDenseLayersThenTakesEveryNth) {
  MoeConfig moe;
  moe.first_dense_layers = 1;
  moe.every_n_layers = 2;
  std::vector<bool> placed;
  for (int64_t layer = 0; layer < 6; ++layer) placed.push_back(is_moe_block(moe, layer));
  EXPECT_EQ(placed, (std::vector<bool>{false, true, false, true, false, true}));
}

TEST(Transformer, BuildsDenseBlocksMoeBlocksAndSharedExpertsAsConfigured) {
  Config c = small_config();
  c.moe.first_dense_layers = 1;
  c.moe.num_shared_experts = 2;
  Transformer model(c, at::kDouble, nullptr, nullptr);
  std::set<std::string> names = names_of(model.parameters());
  EXPECT_TRUE(names.count("layers.0.dense.w_gate"));
  EXPECT_FALSE(names.count("layers.0.moe.router.gate"));
  EXPECT_TRUE(names.count("layers.1.moe.router.gate"));
  EXPECT_TRUE(names.count("layers.2.moe.experts.w_out"));
  EXPECT_TRUE(names.count("layers.2.shared.w_up"));
  EXPECT_EQ(model.moe_layers().size(), 2u);
  for (const auto& p : model.parameters())
    if (p.name == "layers.1.shared.w_up") EXPECT_EQ(p.tensor.size(1), 2 * c.moe.d_expert);
}

TEST(Transformer, TiedHeadIsTheEmbeddingAndTrainsItFromBothEnds) {
  // The tied model against an untied one whose head is a copy of the embedding, transposed:
  // the same logits, and the tied embedding's gradient is the sum of the untied embedding's
  // and head's.
  Config c = small_config();
  c.model.tie_embeddings = true;
  Transformer tied(c, at::kDouble, nullptr, nullptr);
  c.model.tie_embeddings = false;
  Transformer untied(c, at::kDouble, nullptr, nullptr);
  const std::set<std::string> names = names_of(tied.parameters());
  EXPECT_FALSE(names.count("lm_head"));
  {
    c10::NoGradGuard no_grad;
    std::map<std::string, at::Tensor> source;
    for (const auto& p : tied.parameters()) source[p.name] = p.tensor;
    for (const auto& p : untied.parameters())
      p.tensor.copy_(p.name == "lm_head" ? source.at("embedding").t() : source.at(p.name));
  }
  const at::Tensor tokens = longs({1, 5, 9, 4, 7, 2}, {1, 6});
  const at::Tensor real = at::ones({1, 6}, at::kLong);
  const at::Tensor a = tied.forward(tokens, real, false).lm_logits_BLV;
  const at::Tensor b = untied.forward(tokens, real, false).lm_logits_BLV;
  EXPECT_TRUE(at::allclose(a, b, 0, 1e-13));
  a.pow(2).sum().backward();
  b.pow(2).sum().backward();
  std::map<std::string, at::Tensor> grads;
  for (const auto& p : untied.parameters()) grads[p.name] = p.tensor.grad();
  for (const auto& p : tied.parameters())
    if (p.name == "embedding")
      EXPECT_TRUE(
          at::allclose(p.tensor.grad(), grads["embedding"] + grads["lm_head"].t(), 0, 1e-12));
}

TEST(Transformer, LaterTokensDoNotChangeEarlierLogits) {
  Config c = small_config();
  Transformer model(c, at::kDouble, nullptr, nullptr);
  at::Tensor tokens = longs({1, 5, 9, 4, 7, 2}, {1, 6});
  at::Tensor changed = longs({1, 5, 9, 20, 11, 2}, {1, 6});
  at::Tensor real = at::ones({1, 6}, at::kLong);
  at::Tensor a = model.forward(tokens, real, false).lm_logits_BLV;
  at::Tensor b = model.forward(changed, real, false).lm_logits_BLV;
  EXPECT_TRUE(at::allclose(a.narrow(1, 0, 3), b.narrow(1, 0, 3), 0, 1e-12));
  EXPECT_FALSE(at::allclose(a.narrow(1, 3, 1), b.narrow(1, 3, 1), 0, 1e-6));
}

// Dropout masks are keyed by position, so both forwards drop the same units; written-out
// attention (used when attention dropout is on) must stay causal.
TEST(Transformer, LaterTokensDoNotChangeEarlierLogitsWithDropoutOn) {
  Config c = small_config();
  c.model.attention_dropout = 0.2;
  c.model.residual_dropout = 0.2;
  c.moe.expert_dropout = 0.2;
  Transformer model(c, at::kDouble, nullptr, nullptr);
  at::Tensor real = at::ones({1, 6}, at::kLong);
  at::Tensor a = model.forward(longs({1, 5, 9, 4, 7, 2}, {1, 6}), real, true).lm_logits_BLV;
  at::Tensor b = model.forward(longs({1, 5, 9, 20, 11, 2}, {1, 6}), real, true).lm_logits_BLV;
  EXPECT_TRUE(at::allclose(a.narrow(1, 0, 3), b.narrow(1, 0, 3), 0, 1e-12));
  EXPECT_FALSE(at::allclose(a.narrow(1, 3, 1), b.narrow(1, 3, 1), 0, 1e-6));
}

// The cost of sequence-level routing for a language model, which reference.yaml states: a
// token's experts follow its sequence's mean, later tokens included.
TEST(Transformer, SequenceRoutingLetsLaterTokensChangeEarlierLogits) {
  Config c = small_config();
  c.moe.routing_level = RoutingLevel::kSequence;
  c.moe.top_k = 1;
  Transformer model(c, at::kDouble, nullptr, nullptr);
  at::Tensor real = at::ones({1, 6}, at::kLong);
  at::Tensor a = model.forward(longs({1, 5, 9, 4, 7, 2}, {1, 6}), real, false).lm_logits_BLV;
  at::Tensor b = model.forward(longs({1, 5, 9, 20, 11, 2}, {1, 6}), real, false).lm_logits_BLV;
  EXPECT_FALSE(at::allclose(a.narrow(1, 0, 3), b.narrow(1, 0, 3), 0, 1e-9));
}

TEST(Transformer, DropoutActsInTrainingOnlyAndDrawsAgainEachStep) {
  Config c = small_config();
  c.model.attention_dropout = 0.1;
  c.model.residual_dropout = 0.1;
  c.moe.expert_dropout = 0.1;
  Transformer model(c, at::kDouble, nullptr, nullptr);
  at::Tensor tokens = longs({1, 5, 9, 4, 7, 2, 3, 8}, {2, 4}), real = at::ones({2, 4}, at::kLong);
  auto logits = [&](bool training) { return model.forward(tokens, real, training).lm_logits_BLV; };
  const at::Tensor eval = logits(false);
  EXPECT_TRUE(at::equal(logits(false), eval));
  const at::Tensor step0 = logits(true);
  EXPECT_FALSE(at::allclose(step0, eval, 0, 1e-6));
  EXPECT_TRUE(at::equal(logits(true), step0)) << "the same step and micro-batch: the same masks";
  model.set_draw_clock(1, 0);
  EXPECT_FALSE(at::allclose(logits(true), step0, 0, 1e-6));
}

// The written-out attention equals the fused kernel when (almost surely) nothing drops.
TEST(Transformer, WrittenOutAttentionMatchesTheFusedKernel) {
  Config c = small_config();
  c.model.attention_dropout = 1e-12;
  Transformer model(c, at::kDouble, nullptr, nullptr);
  at::Tensor tokens = longs({1, 5, 9, 4, 7, 2, 3, 8}, {2, 4}), real = at::ones({2, 4}, at::kLong);
  EXPECT_TRUE(at::allclose(model.forward(tokens, real, true).lm_logits_BLV,
                           model.forward(tokens, real, false).lm_logits_BLV, 0, 1e-10));
}

TEST(Transformer, PaddingDoesNotChangeTheClassLogits) {
  Config c = small_config();
  c.model.num_classes = 3;
  Transformer model(c, at::kDouble, nullptr, nullptr);  // dropless: routing is per token
  at::Tensor short_row =
      model.forward(longs({1, 5, 9, 2}, {1, 4}), at::ones({1, 4}, at::kLong), false)
          .class_logits_BC;
  at::Tensor padded =
      model.forward(longs({1, 5, 9, 2, 0, 0}, {1, 6}), longs({1, 1, 1, 1, 0, 0}, {1, 6}), false)
          .class_logits_BC;
  EXPECT_TRUE(at::allclose(short_row, padded, 0, 1e-12));
}

TEST(Transformer, SameSeedBuildsTheSameReplicatedWeights) {
  Config c = small_config();
  Transformer a(c, at::kDouble, nullptr, nullptr), b(c, at::kDouble, nullptr, nullptr);
  ParameterList pa = a.parameters(), pb = b.parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_TRUE(at::equal(pa[i].tensor, pb[i].tensor)) << pa[i].name;
}

// One training forward and backward; every parameter's gradient, in the model's order.
std::vector<at::Tensor> gradients_of_one_step(const Config& c) {
  Transformer model(c, at::kDouble, nullptr, nullptr);
  model.set_draw_clock(3, 1);
  at::Tensor tokens = longs({1, 5, 9, 4, 7, 2, 3, 8, 0, 6, 11, 10}, {2, 6});
  at::Tensor real = at::ones({2, 6}, at::kLong);
  ModelOutput out = model.forward(tokens, real, /*training=*/true);
  (out.lm_logits_BLV.pow(2).mean() + out.balance_loss + out.z_loss).backward();
  std::vector<at::Tensor> grads;
  for (const auto& p : model.parameters()) grads.push_back(p.tensor.grad());
  return grads;
}

TEST(Transformer, RecomputedBlocksGiveTheSameGradientsBitwise) {
  // A dense block, MoE blocks with shared experts, both aux losses and every dropout on:
  // the replay must draw the same masks and route the same way.
  Config c = small_config();
  c.moe.first_dense_layers = 1;
  c.moe.num_shared_experts = 1;
  c.moe.z_loss_coef = 0.01;
  c.moe.expert_dropout = 0.2;
  c.model.attention_dropout = 0.1;
  c.model.residual_dropout = 0.1;
  const std::vector<at::Tensor> kept = gradients_of_one_step(c);
  c.train.recompute = Recompute::kBlock;
  const int64_t replays_before = replayed_blocks();
  const std::vector<at::Tensor> recomputed = gradients_of_one_step(c);
  EXPECT_EQ(replayed_blocks() - replays_before, c.model.n_layers);
  ASSERT_EQ(kept.size(), recomputed.size());
  double total = 0;
  for (size_t i = 0; i < kept.size(); ++i) {
    ASSERT_TRUE(kept[i].defined() && recomputed[i].defined()) << "parameter " << i;
    EXPECT_TRUE(at::equal(kept[i], recomputed[i])) << "parameter " << i;
    total += kept[i].abs().sum().item<double>();
  }
  EXPECT_GT(total, 0);
}

TEST(RecomputeInBackward, ABlockWhoseInputNeedsNoGradientStillTrainsItsParameters) {
  // Tokens' embeddings frozen, say: backward never reaches a replay node, so the block must
  // keep its graph (d/dw of sum(x * w) is sum over rows of x).
  const at::Tensor w = at::ones({3}, at::kDouble).set_requires_grad(true);
  const at::Tensor x = at::arange(6, at::kDouble).view({2, 3});
  const int64_t replays_before = replayed_blocks();
  const std::vector<at::Tensor> out = recompute_in_backward(
      x, [&](const at::Tensor& input, bool) { return std::vector<at::Tensor>{input * w}; });
  out[0].sum().backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_TRUE(at::equal(w.grad(), x.sum(0)));
  EXPECT_EQ(replayed_blocks(), replays_before);
}

}  // namespace
}  // namespace triage
