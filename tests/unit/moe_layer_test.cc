// The MoE layer's output equals the naive per-token, per-expert loop in float64, for every
// score function, k, drop policy and expert type; plus the edge cases of routing.
#include <gtest/gtest.h>

#include <ATen/autocast_mode.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <tuple>

#include "moe/moe_layer.h"
#include "naive_moe.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;

constexpr int64_t kTokens = 24, kWidth = 6, kExperts = 8, kHidden = 5;

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.detach() - b.detach()).abs().max().item<double>();
}

// (score function, k, drop policy or "none", expert type, best groups of 4 or 0 for none)
using LayerCase = std::tuple<std::string, int64_t, std::string, std::string, int64_t>;

std::vector<int64_t> as_vector(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

class LayerMatchesNaiveLoop : public testing::TestWithParam<LayerCase> {};

TEST_P(LayerMatchesNaiveLoop, ToFloat64Precision) {
  auto [score_function, k, drops, expert_type, best_groups] = GetParam();
  MoeConfig config = moe_config(kExperts, k);
  config.score_function = choice_from<ScoreFunction>(score_function);
  config.expert_type = choice_from<ExpertType>(expert_type);
  config.d_expert = kHidden;
  config.capacity_factor = drops == "none" ? 0.0 : 0.5;  // capacity ceil(1.5 k): drops
  config.min_capacity = 1;
  if (drops != "none") config.drop_policy = choice_from<DropPolicy>(drops);
  config.num_groups = 4;
  config.topk_groups = best_groups;
  config.balance_loss_coef = 0.1;
  config.z_loss_coef = 0.01;
  at::Generator gen = generator(7 + k);
  MoeLayer layer(config, kWidth, at::kDouble, /*seed=*/7 + k);
  at::Tensor x = at::randn({kTokens, kWidth}, gen, at::kDouble);

  MoeOutput out = layer.forward(x, /*training=*/true);
  NaiveResult expected = naive_moe(x, layer.parameters(), config, config.capacity_factor, 4);

  for (int64_t t = 0; t < kTokens; ++t) {
    EXPECT_EQ(as_vector(out.routing.experts_TK[t]), expected.chosen[size_t(t)]) << "token " << t;
    for (int64_t j = 0; j < k; ++j)
      EXPECT_NEAR(out.routing.weights_TK[t][j].item<double>(),
                  expected.weight[size_t(t)][size_t(j)], 1e-14);
  }
  EXPECT_EQ(out.stats.capacity, expected.capacity);
  EXPECT_NEAR(out.balance_loss.item<double>(), expected.balance_loss, 1e-14);
  EXPECT_NEAR(out.z_loss.item<double>(), expected.z_loss, 1e-13);
  EXPECT_LT(max_abs_diff(out.y, expected.y_TD), 1e-12);
  EXPECT_EQ(out.stats.tokens_per_expert, expected.kept_per_expert);
  EXPECT_EQ(out.stats.dropped, expected.dropped);
  if (drops != "none") EXPECT_GT(out.stats.dropped, 0) << "the case meant to drop did not";
}

INSTANTIATE_TEST_SUITE_P(MoeLayer, LayerMatchesNaiveLoop,
                         testing::Combine(testing::Values("softmax", "sigmoid"),
                                          testing::Values(1, 2, 4),
                                          testing::Values("none", "position", "score"),
                                          testing::Values("gelu", "swiglu"), testing::Values(0, 2)),
                         [](const testing::TestParamInfo<LayerCase>& info) {
                           return std::get<0>(info.param) + "_k" +
                                  std::to_string(std::get<1>(info.param)) + "_drop_" +
                                  std::get<2>(info.param) + "_" + std::get<3>(info.param) +
                                  (std::get<4>(info.param) ? "_best_2_of_4_groups" : "");
                         });

// The sequence-wise balance loss is the mean of each sequence's own Switch loss, which the
// naive layer computes when given that sequence alone.
TEST(MoeLayer, SequenceWiseBalanceLossIsTheMeanOfEachSequencesOwnLoss) {
  MoeConfig config = moe_config(kExperts, 2);
  config.d_expert = kHidden;
  config.balance_loss_coef = 0.1;
  config.balance_loss_scope = BalanceLossScope::kSequence;
  MoeLayer layer(config, kWidth, at::kDouble, /*seed=*/5);
  constexpr int64_t kSequences = 3, kLength = 8;
  at::Tensor x = at::randn({kSequences, kLength, kWidth}, generator(5), at::kDouble);
  MoeOutput out = layer.forward(x, /*training=*/true);
  double expected = 0;
  for (int64_t s = 0; s < kSequences; ++s)
    expected += naive_moe(x[s], layer.parameters(), config, 0).balance_loss / kSequences;
  EXPECT_NEAR(out.balance_loss.item<double>(), expected, 1e-14);
  config.balance_loss_scope = BalanceLossScope::kBatch;
  const double batch = naive_moe(x.view({-1, kWidth}), layer.parameters(), config, 0).balance_loss;
  EXPECT_GT(std::abs(batch - expected), 1e-6) << "the two scopes should differ on this batch";
}

// A layer over 4 experts whose gate sends all-positive inputs only to the experts whose
// row_signs entry is +1 (positive gate rows), never to those with -1 (negative rows).
MoeLayer steered_layer(MoeConfig config, std::vector<double> row_signs) {
  at::Generator gen = generator(3);
  config.d_expert = 3;
  MoeLayer layer(config, 4, at::kDouble, /*seed=*/3);
  at::Tensor rows =
      at::tensor(row_signs, at::kDouble).unsqueeze(1) * (at::rand({4, 4}, gen, at::kDouble) + 0.5);
  assign(layer.router().gate_ED(), rows);
  return layer;
}

at::Tensor positive_tokens(int64_t n) {
  at::Generator gen = generator(11);
  return (at::rand({n, 4}, gen, at::kDouble) + 0.1).set_requires_grad(true);
}

TEST(MoeLayer, ExpertWithNoTokensDoesNoWorkAndGetsZeroGradient) {
  MoeLayer layer = steered_layer(moe_config(4, 2), {1, 1, 1, -1});
  at::Tensor x = positive_tokens(10);
  MoeOutput out = layer.forward(x, true);
  EXPECT_EQ(out.stats.tokens_per_expert[3], 0);
  EXPECT_LT(max_abs_diff(out.y, naive_moe(x, layer.parameters(), layer.config(), 0).y_TD), 1e-12);
  (out.y.sum() + out.balance_loss + out.z_loss).backward();
  const auto& load = out.stats.tokens_per_expert;
  const int64_t busiest = std::max_element(load.begin(), load.end()) - load.begin();
  for (const auto& p : layer.experts().parameters()) {
    EXPECT_EQ(p.tensor.grad()[3].abs().max().item<double>(), 0.0) << p.name;
    EXPECT_GT(p.tensor.grad()[busiest].abs().max().item<double>(), 0.0) << p.name;
  }
}

TEST(MoeLayer, EveryTokenChoosingOneExpertWorksDropless) {
  MoeLayer layer = steered_layer(moe_config(4, 1), {1, -1, -1, -1});
  at::Tensor x = positive_tokens(9);
  MoeOutput out = layer.forward(x, true);
  EXPECT_EQ(out.stats.tokens_per_expert, (std::vector<int64_t>{9, 0, 0, 0}));
  EXPECT_EQ(out.stats.dropped, 0);
  EXPECT_LT(max_abs_diff(out.y, naive_moe(x, layer.parameters(), layer.config(), 0).y_TD), 1e-12);
}

TEST(MoeLayer, EveryTokenChoosingOneExpertOverCapacityDropsTheLaterTokens) {
  MoeConfig config = moe_config(4, 1);
  config.capacity_factor = 1.0;  // ceil(1.0 * 9 * 1 / 4) = 3
  config.min_capacity = 0;
  MoeLayer layer = steered_layer(config, {1, -1, -1, -1});
  at::Tensor x = positive_tokens(9);
  MoeOutput out = layer.forward(x, true);
  EXPECT_EQ(out.stats.capacity, 3);
  EXPECT_EQ(out.stats.tokens_per_expert, (std::vector<int64_t>{3, 0, 0, 0}));
  EXPECT_EQ(out.stats.dropped, 6);
  EXPECT_EQ(out.y.narrow(0, 3, 6).abs().max().item<double>(), 0.0);  // dropped add zero
  EXPECT_GT(out.y.narrow(0, 0, 3).abs().min().item<double>(), 0.0);
}

// Token-level routing over sequences with padding: padding reaches neither the experts nor
// the router's statistics. Expected values come from the same layer run on the real tokens
// alone (one sequence of them), where no padding exists to leak.
TEST(MoeLayer, PaddingIsNeverRoutedCountedOrComputed) {
  MoeConfig config = moe_config(kExperts, 2);
  config.d_expert = kHidden;
  config.balance_loss_coef = 0.1;
  config.z_loss_coef = 0.01;
  MoeLayer layer(config, kWidth, at::kDouble, /*seed=*/9);
  constexpr int64_t kSequences = 3, kLength = 6;
  const at::Tensor x = at::randn({kSequences, kLength, kWidth}, generator(9), at::kDouble);
  const std::vector<int64_t> real_lengths = {6, 2, 4};
  at::Tensor real_BL = at::zeros({kSequences, kLength}, at::kLong);
  for (int64_t s = 0; s < kSequences; ++s) real_BL[s].narrow(0, 0, real_lengths[s]).fill_(1);
  const at::Tensor real_index = real_BL.reshape({-1}).nonzero().squeeze(1);
  const int64_t real_tokens = real_index.size(0);  // 12 of 18
  const at::Tensor x_real = x.reshape({-1, kWidth}).index_select(0, real_index).unsqueeze(0);

  const MoeOutput padded = layer.forward(x, /*training=*/true, 0, real_BL);
  const MoeOutput alone = layer.forward(x_real, /*training=*/true);
  const std::vector<int64_t>& load = padded.stats.tokens_per_expert;
  EXPECT_EQ(std::accumulate(load.begin(), load.end(), int64_t(0)), real_tokens * 2)
      << "padding rows were sent to experts";
  EXPECT_EQ(load, alone.stats.tokens_per_expert);
  EXPECT_EQ(padded.stats.assignments, real_tokens * 2);
  EXPECT_EQ(padded.stats.dropped, 0);
  EXPECT_NEAR(padded.balance_loss.item<double>(), alone.balance_loss.item<double>(), 1e-14);
  // The z-loss sums real tokens only, over the batch's positions (18 here, 12 alone).
  EXPECT_NEAR(padded.z_loss.item<double>(),
              alone.z_loss.item<double>() * double(real_tokens) / double(kSequences * kLength),
              1e-14);
  const at::Tensor y_TD = padded.y.reshape({-1, kWidth});
  EXPECT_LT(max_abs_diff(y_TD.index_select(0, real_index), alone.y.squeeze(0)), 1e-14);
  const at::Tensor padding_index = (real_BL.reshape({-1}) == 0).nonzero().squeeze(1);
  EXPECT_EQ(y_TD.index_select(0, padding_index).abs().max().item<double>(), 0.0);
}

// With capacity (position policy), padding at the end of one sequence would take places
// ahead of the next sequence's real tokens; it takes none.
TEST(MoeLayer, PaddingTakesNoCapacityAheadOfLaterRealTokens) {
  MoeConfig config = moe_config(4, 1);
  config.capacity_factor = 1.0;  // ceil(1.0 * 8 * 1 / 4) = 2 places per expert
  config.min_capacity = 0;
  MoeLayer layer = steered_layer(config, {1, -1, -1, -1});  // every token to expert 0
  const at::Tensor x = positive_tokens(8).detach().view({2, 4, 4});
  const at::Tensor real_BL = longs({1, 0, 0, 0, 1, 1, 1, 1}, {2, 4});
  const MoeOutput out = layer.forward(x, /*training=*/true, 0, real_BL);
  EXPECT_EQ(out.stats.capacity, 2);
  // Kept: token 0 and token 4 (the first real one of sequence 2), not padding 1 and 2.
  EXPECT_EQ(out.stats.tokens_per_expert, (std::vector<int64_t>{2, 0, 0, 0}));
  EXPECT_EQ(out.stats.assignments, 5);
  EXPECT_EQ(out.stats.dropped, 3);
  const at::Tensor y_TD = out.y.reshape({-1, 4});
  EXPECT_GT(y_TD[4].abs().min().item<double>(), 0.0);
  EXPECT_EQ(y_TD.narrow(0, 1, 3).abs().max().item<double>(), 0.0);
}

TEST(MoeLayer, StatsCountEachExpertsKeptAssignments) {
  MoeLayer layer = steered_layer(moe_config(4, 1), {1, -1, -1, -1});
  MoeStats stats = layer.forward(positive_tokens(9), true).stats;
  EXPECT_EQ(stats.assignments, 9);
  EXPECT_EQ(stats.tokens_per_expert, (std::vector<int64_t>{9, 0, 0, 0}));
}

TEST(MoeLayer, EvaluationUsesTheEvalCapacityFactor) {
  MoeConfig config = moe_config(4, 1);
  config.capacity_factor = 1.0;
  config.eval_capacity_factor = 0.0;
  config.min_capacity = 0;
  MoeLayer layer = steered_layer(config, {1, -1, -1, -1});
  EXPECT_EQ(layer.forward(positive_tokens(9), /*training=*/true).stats.dropped, 6);
  EXPECT_EQ(layer.forward(positive_tokens(9), /*training=*/false).stats.dropped, 0);
}

TEST(MoeLayer, KeepsLeadingBatchDimensions) {
  at::Generator gen = generator(5);
  MoeLayer layer(moe_config(4, 2), 6, at::kFloat, /*seed=*/5);
  at::Tensor x = at::randn({2, 3, 6}, gen, at::kFloat);
  MoeOutput out = layer.forward(x, false);
  EXPECT_EQ(out.y.sizes(), x.sizes());
  EXPECT_EQ(out.y.scalar_type(), at::kFloat);
}

TEST(MoeLayer, EmptyBatchGivesEmptyOutputAndZeroLosses) {
  at::Generator gen = generator(5);
  MoeLayer layer(moe_config(4, 2), 6, at::kDouble, /*seed=*/5);
  MoeOutput out = layer.forward(at::zeros({0, 6}, at::kDouble), true);
  EXPECT_EQ(out.y.size(0), 0);
  EXPECT_EQ(out.balance_loss.item<double>(), 0.0);
  EXPECT_EQ(out.stats.dropped, 0);
}

// Sequence-level routing: the naive loop routes each sequence's mean over its real tokens
// (computed here by a loop); every real token then goes to its sequence's experts with its
// sequence's weights, padding to none. Losses count sequences.
TEST(MoeLayer, SequenceRoutingSendsEveryRealTokenToItsSequencesExperts) {
  MoeConfig config = moe_config(kExperts, 2);
  config.d_expert = kHidden;
  config.routing_level = RoutingLevel::kSequence;
  config.balance_loss_coef = 0.1;
  config.z_loss_coef = 0.01;
  MoeLayer layer(config, kWidth, at::kDouble, /*seed=*/9);
  constexpr int64_t kSequences = 4, kLength = 5;
  const at::Tensor x = at::randn({kSequences, kLength, kWidth}, generator(9), at::kDouble);
  const std::vector<int64_t> real_length{5, 3, 5, 1};
  at::Tensor real = at::zeros({kSequences, kLength}, at::kLong);
  for (int64_t s = 0; s < kSequences; ++s) real[s].narrow(0, 0, real_length[size_t(s)]).fill_(1);
  at::Tensor mean_SD = at::zeros({kSequences, kWidth}, at::kDouble);
  for (int64_t s = 0; s < kSequences; ++s)
    for (int64_t l = 0; l < real_length[size_t(s)]; ++l)
      for (int64_t d = 0; d < kWidth; ++d)
        mean_SD[s][d] += x[s][l][d].item<double>() / double(real_length[size_t(s)]);
  const NaiveResult routed = naive_moe(mean_SD, layer.parameters(), config, 0);

  MoeOutput out = layer.forward(x, /*training=*/true, 0, real);
  for (int64_t s = 0; s < kSequences; ++s)
    for (int64_t l = 0; l < kLength; ++l) {
      std::vector<double> expected(kWidth, 0.0);
      if (l < real_length[size_t(s)])
        for (size_t j = 0; j < 2; ++j) {
          const std::vector<double> y =
              naive_expert(x[s][l], layer.parameters(), config, routed.chosen[size_t(s)][j]);
          for (int64_t d = 0; d < kWidth; ++d)
            expected[size_t(d)] += routed.weight[size_t(s)][j] * y[size_t(d)];
        }
      EXPECT_LT(max_abs_diff(out.y[s][l], at::tensor(expected, at::kDouble)), 1e-12)
          << "sequence " << s << ", position " << l;
      EXPECT_EQ(out.top_expert_T[s * kLength + l].item<int64_t>(), routed.chosen[size_t(s)][0]);
    }
  EXPECT_NEAR(out.balance_loss.item<double>(), routed.balance_loss, 1e-14);
  EXPECT_NEAR(out.z_loss.item<double>(), routed.z_loss, 1e-13);
  EXPECT_EQ(out.stats.assignments, (5 + 3 + 5 + 1) * 2) << "real tokens x k";
  EXPECT_EQ(out.stats.dropped, 0);
}

// Capacity under sequence routing is counted in sequences: at factor 0.5 over 4 sequences,
// top-1, 2 experts, each expert keeps ceil(0.5 * 4 / 2) = 1 sequence, all of its tokens.
TEST(MoeLayer, SequenceRoutingCapacityKeepsOrDropsWholeSequences) {
  MoeConfig config = moe_config(2, 1);
  config.routing_level = RoutingLevel::kSequence;
  config.capacity_factor = 0.5;
  config.min_capacity = 1;
  config.d_expert = 3;
  MoeLayer layer(config, 4, at::kDouble, /*seed=*/2);
  assign(layer.router().gate_ED(), doubles({1, 1, 1, 1, -1, -1, -1, -1}, {2, 4}));
  const at::Tensor x = at::rand({4, 3, 4}, generator(4), at::kDouble) + 0.1;  // all to expert 0
  MoeOutput out = layer.forward(x, /*training=*/true);
  EXPECT_EQ(out.stats.capacity, 1);
  EXPECT_EQ(out.stats.tokens_per_expert, (std::vector<int64_t>{3, 0}));
  EXPECT_EQ(out.stats.dropped, 9);
  EXPECT_GT(out.y[0].abs().sum().item<double>(), 0) << "the first sequence is kept whole";
  EXPECT_EQ(out.y.narrow(0, 1, 3).abs().sum().item<double>(), 0);
}

// Expert choice: each expert takes its C = ceil(1.0 * 24 * 2 / 8) = 6 best-scoring tokens
// (scores from a loop softmax), and a token's output sums score x expert over the experts
// that took it, 0 to 8 of them.
TEST(MoeLayer, ExpertChoiceGivesEachExpertItsTopCTokensWeightedByScore) {
  MoeConfig config = moe_config(kExperts, 2);
  config.d_expert = kHidden;
  config.router = RouterKind::kExpertChoice;
  config.capacity_factor = 1.0;
  config.min_capacity = 1;
  MoeLayer layer(config, kWidth, at::kDouble, /*seed=*/13);
  const at::Tensor x = at::randn({kTokens, kWidth}, generator(13), at::kDouble);
  const at::Tensor gate = parameter(layer.parameters(), "router.gate");
  std::vector<std::vector<double>> score(kTokens, std::vector<double>(kExperts));
  for (int64_t t = 0; t < kTokens; ++t) {
    double sum = 0;
    for (int64_t e = 0; e < kExperts; ++e)
      sum += score[t][e] = std::exp((x[t] * gate[e]).sum().item<double>());
    for (double& v : score[t]) v /= sum;
  }
  at::Tensor expected = at::zeros({kTokens, kWidth}, at::kDouble);
  std::vector<int64_t> experts_per_token(kTokens, 0);
  for (int64_t e = 0; e < kExperts; ++e) {
    std::vector<int64_t> order(kTokens);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return score[a][e] > score[b][e]; });
    for (int64_t i = 0; i < 6; ++i) {
      const int64_t t = order[size_t(i)];
      ++experts_per_token[size_t(t)];
      expected[t] +=
          score[t][e] * at::tensor(naive_expert(x[t], layer.parameters(), config, e), at::kDouble);
    }
  }
  MoeOutput out = layer.forward(x, /*training=*/true);
  EXPECT_LT(max_abs_diff(out.y, expected), 1e-12);
  EXPECT_EQ(out.stats.capacity, 6);
  EXPECT_EQ(out.stats.tokens_per_expert, std::vector<int64_t>(kExperts, 6));
  EXPECT_EQ(out.balance_loss.item<double>(), 0.0) << "balanced by construction";
  EXPECT_EQ(out.keep_TK.sum(1).to(at::kLong).contiguous().view({-1}).data_ptr<int64_t>()[0],
            experts_per_token[0]);
  EXPECT_NE(*std::min_element(experts_per_token.begin(), experts_per_token.end()),
            *std::max_element(experts_per_token.begin(), experts_per_token.end()))
      << "tokens should get different numbers of experts on this batch";
}

// moe.expert_choice_slices 2: the batch's halves choose apart, each expert taking its
// C = ceil(1.0 * 12 * 2 / 8) = 3 best of each half: what a layer given only that half
// takes (every expert exactly full in each half, so each EP group's copies are too).
TEST(MoeLayer, ExpertChoiceInSlicesTakesEachSlicesOwnTopC) {
  MoeConfig config = moe_config(kExperts, 2);
  config.d_expert = kHidden;
  config.router = RouterKind::kExpertChoice;
  config.capacity_factor = 1.0;
  config.min_capacity = 1;
  config.expert_choice_slices = 2;
  MoeLayer sliced(config, kWidth, at::kDouble, /*seed=*/13);
  config.expert_choice_slices = 1;
  MoeLayer whole(config, kWidth, at::kDouble, /*seed=*/13);
  const at::Tensor x = at::randn({kTokens, kWidth}, generator(13), at::kDouble);
  const MoeOutput out = sliced.forward(x, /*training=*/true);
  EXPECT_EQ(out.stats.capacity, 3);
  for (int64_t half = 0; half < 2; ++half) {
    const MoeOutput alone = whole.forward(x.narrow(0, half * kTokens / 2, kTokens / 2), true);
    EXPECT_TRUE(at::equal(out.keep_TK.narrow(0, half * kTokens / 2, kTokens / 2), alone.keep_TK))
        << "half " << half;
    EXPECT_LT(max_abs_diff(out.y.narrow(0, half * kTokens / 2, kTokens / 2), alone.y), 1e-15);
  }
  EXPECT_EQ(out.stats.tokens_per_expert, std::vector<int64_t>(kExperts, 6));
}

// train.precision bf16 keeps float32 where precision matters: under bf16 autocast the
// router scores and chooses in float32, the balance and z losses and the layer's output
// are float32, and the rows handed to the experts are bf16 (2 bytes a value).
TEST(MoeLayer, Bf16AutocastKeepsRouterLossesAndOutputInFloat32AndRowsInBf16) {
  MoeConfig config = moe_config(kExperts, 2);
  config.d_expert = kHidden;
  config.balance_loss_coef = 0.1;
  config.z_loss_coef = 0.01;
  MoeLayer layer(config, kWidth, at::kFloat, 3);
  const at::Tensor x = at::randn({kTokens, kWidth}, generator(1), at::kFloat);
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCPU, true);
  MoeOutput out = layer.forward(x, true);
  at::autocast::set_autocast_enabled(at::kCPU, false);
  at::autocast::clear_cache();
  EXPECT_EQ(out.routing.logits_TE.scalar_type(), at::kFloat);
  EXPECT_EQ(out.routing.scores_TE.scalar_type(), at::kFloat);
  EXPECT_EQ(out.routing.weights_TK.scalar_type(), at::kFloat);
  EXPECT_EQ(out.balance_loss.scalar_type(), at::kFloat);
  EXPECT_EQ(out.z_loss.scalar_type(), at::kFloat);
  EXPECT_EQ(out.y.scalar_type(), at::kFloat);
  EXPECT_EQ(out.stats.row_bytes, kWidth * 2);
}

}  // namespace
}  // namespace triage
