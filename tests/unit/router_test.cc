// Router: top-k choice, score functions, renormalisation, route scale, selection bias,
// jitter. The gate is set to the identity so that logits equal the input and every
// expected value below is worked out by hand from exp() and 1/(1+exp(-x)).
#include <gtest/gtest.h>

#include <cmath>

#include "moe/router.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;

// A router over 4 experts with D = 4 whose logits are exactly the input rows.
Router identity_router(MoeConfig config, at::ScalarType dtype = at::kDouble) {
  at::Generator gen = generator(1);
  Router router(config, /*d_model=*/4, dtype, gen);
  assign(router.gate_ED(), at::eye(4, router.gate_ED().options()));
  return router;
}

const at::Tensor kLogits = doubles({1, 3, 2, 0}, {1, 4});
const double kSoftmaxSum = std::exp(1) + std::exp(3) + std::exp(2) + std::exp(0);

TEST(Router, TopKChoosesHighestScoresBestFirst) {
  auto router = identity_router(moe_config(4, 2));
  RouterOutput out = router.forward(kLogits, false);
  EXPECT_TRUE(at::equal(out.experts_TK, longs({1, 2}, {1, 2})));
}

TEST(Router, TopKWithKEqualToExpertsRanksAll) {
  auto router = identity_router(moe_config(4, 4));
  RouterOutput out = router.forward(kLogits, false);
  EXPECT_TRUE(at::equal(out.experts_TK, longs({1, 2, 0, 3}, {1, 4})));
}

TEST(Router, SoftmaxWithoutRenormalisationGivesProbabilities) {
  MoeConfig config = moe_config(4, 2);
  config.renormalize = false;
  auto router = identity_router(config);
  RouterOutput out = router.forward(kLogits, false);
  EXPECT_NEAR(out.weights_TK[0][0].item<double>(), std::exp(3) / kSoftmaxSum, 1e-15);
  EXPECT_NEAR(out.weights_TK[0][1].item<double>(), std::exp(2) / kSoftmaxSum, 1e-15);
}

TEST(Router, RenormalisationMakesChosenWeightsSumToOne) {
  auto router = identity_router(moe_config(4, 2));
  RouterOutput out = router.forward(kLogits, false);
  // e^3 / (e^3 + e^2) = 1 / (1 + e^-1)
  EXPECT_NEAR(out.weights_TK[0][0].item<double>(), 1 / (1 + std::exp(-1)), 1e-15);
  EXPECT_NEAR(out.weights_TK[0][1].item<double>(), 1 / (1 + std::exp(1)), 1e-15);
}

// Renormalising one score would make every weight 1 and leave the gate without a gradient
// from the task loss, so top-1 keeps the raw score even with renormalize on.
TEST(Router, TopOneKeepsTheRawScoreSoTheGateLearnsFromTheTask) {
  for (ScoreFunction score : {ScoreFunction::kSoftmax, ScoreFunction::kSigmoid}) {
    MoeConfig config = moe_config(4, 1);
    config.score_function = score;
    ASSERT_TRUE(config.renormalize);
    auto router = identity_router(config);
    at::Tensor x = kLogits.clone().set_requires_grad(true);
    RouterOutput out = router.forward(x, false);
    const double expected =
        score == ScoreFunction::kSoftmax ? std::exp(3) / kSoftmaxSum : 1 / (1 + std::exp(-3));
    EXPECT_NEAR(out.weights_TK[0][0].item<double>(), expected, 1e-15) << name_of(score);
    out.weights_TK.sum().backward();
    EXPECT_GT(router.gate_ED().grad().abs().sum().item<double>(), 0.0) << name_of(score);
  }
}

TEST(Router, SigmoidScoresEachExpertIndependently) {
  MoeConfig config = moe_config(4, 2);
  config.score_function = ScoreFunction::kSigmoid;
  config.renormalize = false;
  auto router = identity_router(config);
  RouterOutput out = router.forward(kLogits, false);
  EXPECT_NEAR(out.weights_TK[0][0].item<double>(), 1 / (1 + std::exp(-3)), 1e-15);
  EXPECT_NEAR(out.weights_TK[0][1].item<double>(), 1 / (1 + std::exp(-2)), 1e-15);
}

TEST(Router, RouteScaleMultipliesRenormalisedWeights) {
  MoeConfig config = moe_config(4, 2);
  config.score_function = ScoreFunction::kSigmoid;
  config.route_scale = 2.5;
  auto router = identity_router(config);
  RouterOutput out = router.forward(kLogits, false);
  double s3 = 1 / (1 + std::exp(-3)), s2 = 1 / (1 + std::exp(-2));
  EXPECT_NEAR(out.weights_TK[0][0].item<double>(), 2.5 * s3 / (s3 + s2), 1e-15);
  EXPECT_NEAR(out.weights_TK[0][1].item<double>(), 2.5 * s2 / (s3 + s2), 1e-15);
}

TEST(Router, SelectionBiasChangesTheChoiceButNotTheWeight) {
  MoeConfig config = moe_config(4, 1);
  config.expert_bias = true;
  config.renormalize = false;
  auto router = identity_router(config);
  assign(router.expert_bias_E(), doubles({0, 0, 0, 1.0}, {4}));  // expert 3 now wins
  RouterOutput out = router.forward(kLogits, false);
  EXPECT_EQ(out.experts_TK[0][0].item<int64_t>(), 3);
  EXPECT_NEAR(out.weights_TK[0][0].item<double>(), std::exp(0) / kSoftmaxSum, 1e-15);
}

TEST(Router, BiasUpdateMovesTowardsUnderloadedExperts) {
  MoeConfig config = moe_config(4, 1);
  config.expert_bias = true;
  config.bias_update_rate = 0.25;
  auto router = identity_router(config);
  router.update_expert_bias(longs({10, 0, 5, 5}, {4}));  // mean load 5
  EXPECT_TRUE(at::allclose(router.expert_bias_E(), doubles({-0.25, 0.25, 0, 0}, {4})));
  EXPECT_FALSE(router.expert_bias_E().requires_grad());
}

TEST(Router, BiasUpdateIsANoOpWhenBiasDisabled) {
  auto router = identity_router(moe_config(4, 1));
  router.update_expert_bias(longs({10, 0, 5, 5}, {4}));
  EXPECT_TRUE(at::equal(router.expert_bias_E(), at::zeros({4}, at::kDouble)));
}

TEST(Router, JitterPerturbsOnlyInTrainingAndWithinItsBound) {
  MoeConfig config = moe_config(4, 2);
  config.noise = RouterNoise::kJitter;
  config.jitter_noise = 0.1;
  auto router = identity_router(config);
  at::Tensor x = doubles({1, 3, 2, 0.5, 2, 1, 4, 3}, {2, 4});
  EXPECT_TRUE(at::equal(router.forward(x, false).logits_TE, x));
  at::Tensor noisy = router.forward(x, true).logits_TE;
  EXPECT_FALSE(at::equal(noisy, x));
  at::Tensor ratio = noisy / x;  // logits = x * U(0.9, 1.1) elementwise
  EXPECT_GE(ratio.min().item<double>(), 0.9);
  EXPECT_LE(ratio.max().item<double>(), 1.1);
}

// Scores 0.9, 0.0 | 0.5, 0.45: group 0 scores 0.9, group 1 scores 0.95. Keeping the best
// group leaves experts 2 and 3, though expert 0 has the single highest score.
TEST(Router, GroupLimitedRoutingChoosesOnlyInsideTheBestGroups) {
  MoeConfig config = moe_config(4, 2);
  config.score_function = ScoreFunction::kSigmoid;
  config.num_groups = 2;
  config.topk_groups = 1;
  at::Generator gen = generator(1);
  Router router(config, 4, at::kDouble, gen, /*num_groups=*/2);
  assign(router.gate_ED(), at::eye(4, at::kDouble));
  const at::Tensor logits = at::logit(doubles({0.9, 0.0001, 0.5, 0.45}, {1, 4}));
  EXPECT_TRUE(at::equal(router.forward(logits, false).experts_TK, longs({2, 3}, {1, 2})));
  config.topk_groups = 0;
  Router unlimited(config, 4, at::kDouble, gen, 2);
  assign(unlimited.gate_ED(), at::eye(4, at::kDouble));
  EXPECT_TRUE(at::equal(unlimited.forward(logits, false).experts_TK, longs({0, 2}, {1, 2})));
}

TEST(Router, GroupScoreIsTheSumOfTheTwoBestInEachGroup) {
  // Group 0: 5 + 0 = 5; group 1: 3 + 3 = 6 (its best alone, 3, is below group 0's 5).
  const at::Tensor selection = doubles({5, 0, 3, 3}, {1, 4});
  const at::Tensor limited = within_best_groups(selection, 2, 1);
  EXPECT_TRUE(at::isinf(limited[0][0]).item<bool>());
  EXPECT_TRUE(at::equal(limited.narrow(1, 2, 2), selection.narrow(1, 2, 2)));
}

TEST(Router, GateStaysFloat32ForLowPrecisionModels) {
  at::Generator gen = generator(1);
  Router router(moe_config(4, 2), 4, at::kBFloat16, gen);
  RouterOutput out = router.forward(at::ones({3, 4}, at::kBFloat16), false);
  EXPECT_EQ(router.gate_ED().scalar_type(), at::kFloat);
  EXPECT_EQ(out.logits_TE.scalar_type(), at::kFloat);
  EXPECT_EQ(out.weights_TK.scalar_type(), at::kBFloat16);
}

// Shazeer's noise: logits = clean + N(0,1) * softplus(x @ noise_gate^T). With the gate the
// identity, the clean logits are x; the spread is checked against log(1 + exp(.)) and the
// standardised noise against N(0, 1) over 32k draws (standard errors 0.006 and 0.008).
TEST(Router, ShazeerNoiseIsAStandardNormalTimesTheLearnedSoftplusSpread) {
  MoeConfig config = moe_config(4, 2);
  config.noise = RouterNoise::kShazeer;
  auto router = identity_router(config);
  assign(router.noise_gate_ED(),
         doubles({0.5, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0.2, 0, 0, 0, 0, 0}, {4, 4}));
  const at::Tensor x = at::randn({8000, 4}, generator(2), at::kDouble);
  EXPECT_TRUE(at::equal(router.forward(x, false).logits_TE, x)) << "no noise at evaluation";
  RouterOutput out = router.forward(x, true, {/*key=*/42, /*first_row=*/0});
  const at::Tensor spread = at::log1p(at::exp(at::matmul(x, router.noise_gate_ED().t())));
  EXPECT_LT((out.noise_std_TE - spread).abs().max().item<double>(), 1e-12);
  EXPECT_TRUE(at::equal(out.clean_logits_TE, x));
  const at::Tensor standard = (out.logits_TE - x) / spread;
  EXPECT_LT(standard.mean().abs().item<double>(), 0.03);
  EXPECT_LT((standard.std() - 1).abs().item<double>(), 0.04);
  EXPECT_TRUE(router.noise_gate_ED().requires_grad());
}

// A row's noise is keyed by its global index: rows 4..7 routed alone (first_row 4) draw what
// they draw inside the whole batch, so an EP rank and the one-rank reference agree.
TEST(Router, NoiseDependsOnTheGlobalRowNotOnHowTheBatchIsSplit) {
  for (RouterNoise noise : {RouterNoise::kJitter, RouterNoise::kShazeer}) {
    MoeConfig config = moe_config(4, 2);
    config.noise = noise;
    config.jitter_noise = noise == RouterNoise::kJitter ? 0.2 : 0.0;
    auto router = identity_router(config);
    const at::Tensor x = at::randn({8, 4}, generator(3), at::kDouble);
    const at::Tensor whole = router.forward(x, true, {7, 0}).logits_TE;
    const at::Tensor part = router.forward(x.narrow(0, 4, 4), true, {7, 4}).logits_TE;
    EXPECT_TRUE(at::equal(part, whole.narrow(0, 4, 4))) << name_of(noise);
    EXPECT_FALSE(at::equal(router.forward(x, true, {8, 0}).logits_TE, whole))
        << name_of(noise) << ": another key (step) must draw other noise";
  }
}

}  // namespace
}  // namespace triage
