// The MoE layer's output equals the naive per-token, per-expert loop in float64, for every
// score function, k, drop policy and expert type; plus the edge cases of routing.
#include <gtest/gtest.h>

#include <algorithm>
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

TEST(MoeLayer, StatsReportMaxAndMeanLoad) {
  MoeLayer layer = steered_layer(moe_config(4, 1), {1, -1, -1, -1});
  MoeStats stats = layer.forward(positive_tokens(9), true).stats;
  EXPECT_EQ(stats.assignments, 9);
  EXPECT_DOUBLE_EQ(stats.max_load, 9.0);
  EXPECT_DOUBLE_EQ(stats.mean_load, 9.0 / 4);
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

}  // namespace
}  // namespace triage
