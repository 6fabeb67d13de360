// Counter-based random numbers: the moments of their distributions, their independence
// of neighbours, and that a draw depends on (key, counter) only.
#include <gtest/gtest.h>

#include "common/counter_random.h"

namespace triage {
namespace {

const at::Tensor kCounters = at::arange(200000, at::kLong);

// Uniform(0, 1): mean 1/2, variance 1/12; over 200k draws the standard errors of the mean
// and variance are 0.00065 and 0.0002, so the bounds below are about 8 of them.
TEST(CounterRandom, UniformHasTheMomentsOfUniform01) {
  const at::Tensor u = counter_uniform(random_key({1, 2, 3}), kCounters);
  EXPECT_GT(u.min().item<double>(), 0.0);
  EXPECT_LT(u.max().item<double>(), 1.0);
  EXPECT_NEAR(u.mean().item<double>(), 0.5, 0.005);
  EXPECT_NEAR(u.var().item<double>(), 1.0 / 12.0, 0.0015);
  // Ten equal bins each hold a tenth (binomial standard error 0.00067).
  const at::Tensor bins = at::bincount((u * 10).floor().to(at::kLong), {}, 10).to(at::kDouble);
  EXPECT_LT((bins / 200000.0 - 0.1).abs().max().item<double>(), 0.005);
}

TEST(CounterRandom, NormalHasTheMomentsOfAStandardNormal) {
  const at::Tensor z = counter_normal(random_key({4}), kCounters);
  EXPECT_NEAR(z.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(z.var().item<double>(), 1.0, 0.02);
  // P(|z| > 1.96) = 0.05.
  EXPECT_NEAR((z.abs() > 1.96).to(at::kDouble).mean().item<double>(), 0.05, 0.003);
}

// Neighbouring counters (a token's neighbouring experts) must not move together.
TEST(CounterRandom, NeighbouringCountersAreUncorrelated) {
  const at::Tensor u = counter_uniform(random_key({5}), kCounters) - 0.5;
  const double lag_one = (u.narrow(0, 0, 199999) * u.narrow(0, 1, 199999)).mean().item<double>();
  EXPECT_NEAR(lag_one / (1.0 / 12.0), 0.0, 0.01);
  const at::Tensor other = counter_uniform(random_key({6}), kCounters) - 0.5;
  EXPECT_NEAR((u * other).mean().item<double>() / (1.0 / 12.0), 0.0, 0.01) << "across keys";
}

TEST(CounterRandom, ADrawDependsOnKeyAndCounterOnly) {
  const uint64_t key = random_key({9, 10});
  const at::Tensor whole = counter_uniform(key, block_counters(0, 6, 3));
  EXPECT_TRUE(at::equal(counter_uniform(key, block_counters(2, 4, 3)), whole.narrow(0, 2, 4)));
  EXPECT_FALSE(at::equal(counter_uniform(random_key({9, 11}), block_counters(0, 6, 3)), whole));
  // Counters beyond 2^31 (large global batches) still differ from their low bits alone.
  const at::Tensor high = at::tensor({int64_t(5), int64_t(5) + (int64_t(1) << 31)}, at::kLong);
  const at::Tensor u = counter_uniform(key, high);
  EXPECT_NE(u[0].item<double>(), u[1].item<double>());
}

// Inverted dropout: a share p of units is zeroed, the rest scaled by 1/(1-p), so the mean
// is kept; the same key and counters drop the same units.
TEST(CounterRandom, KeyedDropoutDropsAShareAndKeepsTheMean) {
  const at::Tensor ones = at::ones({100000}, at::kDouble);
  const at::Tensor dropped =
      keyed_dropout(ones, 0.25, random_key({7}), kCounters.narrow(0, 0, 100000));
  EXPECT_NEAR((dropped == 0).to(at::kDouble).mean().item<double>(), 0.25, 0.006);
  EXPECT_NEAR(dropped.max().item<double>(), 1 / 0.75, 1e-15);
  EXPECT_NEAR(dropped.mean().item<double>(), 1.0, 0.01);
  EXPECT_TRUE(at::equal(keyed_dropout(ones, 0.25, random_key({7}), kCounters.narrow(0, 0, 100000)),
                        dropped));
  EXPECT_TRUE(
      at::equal(keyed_dropout(ones, 0.0, random_key({7}), kCounters.narrow(0, 0, 100000)), ones));
}

}  // namespace
}  // namespace triage
