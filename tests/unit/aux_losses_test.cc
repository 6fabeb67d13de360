// Load-balancing loss and z-loss against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "moe/aux_losses.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;

TEST(BalanceLoss, EqualsAlphaWhenRoutingIsUniform) {
  at::Tensor scores = at::full({4, 4}, 0.25, at::kDouble);
  at::Tensor experts = longs({0, 1, 2, 3}, {4, 1});
  EXPECT_NEAR(balance_loss(balance_stats(scores, experts), 0.01).item<double>(), 0.01, 1e-15);
}

TEST(BalanceLoss, MatchesHandWorkedSwitchFormula) {
  // T=2, E=2, K=1, both tokens to expert 0: f = (1, 0), P = (0.7, 0.3).
  // L = alpha * E * (1 * 0.7 + 0 * 0.3) = 0.5 * 2 * 0.7 = 0.7
  at::Tensor scores = doubles({0.8, 0.2, 0.6, 0.4}, {2, 2});
  at::Tensor experts = longs({0, 0}, {2, 1});
  EXPECT_NEAR(balance_loss(balance_stats(scores, experts), 0.5).item<double>(), 0.7, 1e-15);
}

TEST(BalanceLoss, CountsEveryOneOfTheKChoices) {
  // T=1, E=3, K=2 to experts 0 and 2: f = (1/2, 0, 1/2), P = (0.5, 0.2, 0.3).
  // L = 1 * 3 * (0.25 + 0.15) = 1.2
  at::Tensor scores = doubles({0.5, 0.2, 0.3}, {1, 3});
  at::Tensor experts = longs({0, 2}, {1, 2});
  EXPECT_NEAR(balance_loss(balance_stats(scores, experts), 1.0).item<double>(), 1.2, 1e-15);
}

TEST(BalanceLoss, NormalisesSigmoidScoresPerToken) {
  // Sigmoid scores (0.9, 0.3) normalise to (0.75, 0.25); K=1 to expert 1: L = 2 * 0.25.
  at::Tensor scores = doubles({0.9, 0.3}, {1, 2});
  at::Tensor experts = longs({1}, {1, 1});
  EXPECT_NEAR(balance_loss(balance_stats(scores, experts), 1.0).item<double>(), 0.5, 1e-15);
}

TEST(BalanceLoss, GradientFlowsOnlyThroughMeanProbabilities) {
  // dL/dP_i = alpha * E * f_i / T per token; f = (1, 0): gradient (2, 0) for each of 1 token.
  at::Tensor scores = doubles({0.6, 0.4}, {1, 2}).set_requires_grad(true);
  at::Tensor experts = longs({0}, {1, 1});
  balance_loss(balance_stats(scores, experts), 1.0).backward();
  // p = s / sum(s): dL/ds_j = 2 * (delta_0j - p_0) / sum(s) = 2 * ((1-0.6), -0.6)
  EXPECT_TRUE(at::allclose(scores.grad(), doubles({0.8, -1.2}, {1, 2}), 0, 1e-14));
}

TEST(ZLoss, IsMeanSquaredLogSumExp) {
  // Rows (0, 0) and (ln 3, 0): logsumexp = ln 2 and ln 4 = 2 ln 2.
  // mean of squares = (1 + 4) / 2 * (ln 2)^2
  at::Tensor logits = doubles({0, 0, std::log(3.0), 0}, {2, 2});
  double ln2 = std::log(2.0);
  EXPECT_NEAR(z_loss(logits, 0.1).item<double>(), 0.1 * 2.5 * ln2 * ln2, 1e-15);
}

TEST(AuxLosses, AreZeroForAnEmptyBatch) {
  at::Tensor scores = at::zeros({0, 4}, at::kDouble);
  at::Tensor experts = at::zeros({0, 2}, at::kLong);
  EXPECT_EQ(balance_loss(balance_stats(scores, experts), 1.0).item<double>(), 0.0);
  EXPECT_EQ(z_loss(scores, 1.0).item<double>(), 0.0);
}

// One token, three experts, top-1. Clean logits (1, 0, -1), noisy (1.5, 0.2, -1), spread 1.
// Expert 0 is chosen (weight 0.7); without it the best of the others is 0.2, so
// z_0 = 1 - 0.2 = 0.8; experts 1 and 2 must beat 1.5: z = -1.5 and -2.5.
// Phi(0.8) = 0.7881446014, Phi(-1.5) = 0.0668072013, Phi(-2.5) = 0.0062096653 (tables).
TEST(ImportanceLoadLoss, MatchesShazeersDefinitionsWorkedByHand) {
  const at::Tensor clean = doubles({1, 0, -1}, {1, 3});
  const at::Tensor noisy = doubles({1.5, 0.2, -1}, {1, 3});
  const at::Tensor spread = at::ones({1, 3}, at::kDouble);
  ImportanceLoad sums =
      importance_load(doubles({0.7}, {1, 1}), longs({0}, {1, 1}), noisy, clean, spread);
  EXPECT_TRUE(at::allclose(sums.importance_E, doubles({0.7, 0, 0}, {3})));
  const std::vector<double> load{0.7881446014, 0.0668072013, 0.0062096653};
  EXPECT_TRUE(at::allclose(sums.load_E, doubles(load, {3}), 0, 1e-9)) << sums.load_E;
  // CV^2 of (0.7, 0, 0) = (population variance 0.108889) / (mean^2 0.054444) = 2.
  double mean = (load[0] + load[1] + load[2]) / 3, var = 0;
  for (double v : load) var += (v - mean) * (v - mean) / 3;
  EXPECT_NEAR(cv_squared_loss(sums, 0.1).item<double>(), 0.1 * (2.0 + var / (mean * mean)), 1e-9);
}

TEST(ImportanceLoadLoss, IsZeroWhenImportanceAndLoadAreEven) {
  ImportanceLoad even{doubles({2, 2, 2}, {3}), doubles({1.5, 1.5, 1.5}, {3})};
  EXPECT_NEAR(cv_squared_loss(even, 1.0).item<double>(), 0.0, 1e-15);
}

// The load estimate is differentiable in the clean logits and the spread (its purpose: the
// count of chosen tokens is not).
TEST(ImportanceLoadLoss, LoadCarriesGradientToTheCleanLogitsAndSpread) {
  const at::Tensor clean = doubles({1, 0, -1, 0.5, 0.2, 0.1}, {2, 3}).set_requires_grad(true);
  const at::Tensor spread = doubles({1, 2, 1, 0.5, 1, 1}, {2, 3}).set_requires_grad(true);
  const at::Tensor noisy = clean.detach() + doubles({0.1, -0.3, 0.2, 0.4, 0.0, -0.2}, {2, 3});
  const at::Tensor experts = std::get<1>(noisy.topk(1, -1));
  ImportanceLoad sums = importance_load(noisy.gather(1, experts), experts, noisy, clean, spread);
  sums.load_E.sum().backward();
  EXPECT_GT(clean.grad().abs().sum().item<double>(), 0);
  EXPECT_GT(spread.grad().abs().sum().item<double>(), 0);
}

}  // namespace
}  // namespace triage
