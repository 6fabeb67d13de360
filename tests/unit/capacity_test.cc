// Capacity arithmetic and the two drop policies on routings small enough to check by eye.
#include <gtest/gtest.h>

#include "moe/capacity.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;

TEST(Capacity, IsCeilOfFactorTimesTokensTimesKOverExperts) {
  EXPECT_EQ(expert_capacity(1.25, 10, 2, 4, 0), 7);  // ceil(6.25)
  EXPECT_EQ(expert_capacity(1.0, 8, 2, 4, 0), 4);    // exactly 4, not rounded up
  EXPECT_EQ(expert_capacity(1.25, 8, 2, 4, 0), 5);   // exactly 5.0 in decimal
  EXPECT_EQ(expert_capacity(2.0, 3, 1, 8, 0), 1);    // ceil(0.75)
}

TEST(Capacity, NeverFallsBelowTheMinimum) {
  EXPECT_EQ(expert_capacity(0.1, 10, 1, 4, 4), 4);  // ceil(0.25) = 1 -> 4
}

TEST(Capacity, FactorZeroIsDropless) { EXPECT_EQ(expert_capacity(0.0, 1000, 2, 4, 4), kDropless); }

TEST(Capacity, PositionPolicyKeepsEarliestTokensPerExpert) {
  at::Tensor experts = longs({0, 0, 1, 0, 0}, {5, 1});
  at::Tensor scores = doubles({0.1, 0.2, 0.3, 0.9, 0.8}, {5, 1});
  at::Tensor keep = capacity_keep_mask(experts, scores, 2, 2, DropPolicy::kPosition);
  EXPECT_TRUE(at::equal(keep, bools({1, 1, 1, 0, 0}, {5, 1})));
}

// Padding (ineligible rows) ahead of real tokens takes no place: the later real tokens
// are kept as if the padding were not there.
TEST(Capacity, IneligibleRowsAreNeverKeptAndTakeNoPlace) {
  at::Tensor experts = longs({0, 0, 0, 0, 1}, {5, 1});
  at::Tensor scores = doubles({0.1, 0.2, 0.3, 0.9, 0.8}, {5, 1});
  at::Tensor eligible = bools({0, 0, 1, 1, 0}, {5});
  for (DropPolicy policy : {DropPolicy::kPosition, DropPolicy::kScore})
    EXPECT_TRUE(at::equal(capacity_keep_mask(experts, scores, 2, 2, policy, eligible),
                          bools({0, 0, 1, 1, 0}, {5, 1})));
  EXPECT_TRUE(
      at::equal(capacity_keep_mask(experts, scores, 2, kDropless, DropPolicy::kPosition, eligible),
                bools({0, 0, 1, 1, 0}, {5, 1})));
}

TEST(Capacity, ScorePolicyKeepsHighestScoresPerExpert) {
  at::Tensor experts = longs({0, 0, 1, 0, 0}, {5, 1});
  at::Tensor scores = doubles({0.1, 0.2, 0.3, 0.9, 0.8}, {5, 1});
  at::Tensor keep = capacity_keep_mask(experts, scores, 2, 2, DropPolicy::kScore);
  EXPECT_TRUE(at::equal(keep, bools({0, 0, 1, 1, 1}, {5, 1})));
}

TEST(Capacity, ScorePolicyBreaksTiesByEarlierToken) {
  at::Tensor experts = longs({0, 0, 0}, {3, 1});
  at::Tensor scores = doubles({0.5, 0.7, 0.7}, {3, 1});
  at::Tensor keep = capacity_keep_mask(experts, scores, 1, 2, DropPolicy::kScore);
  EXPECT_TRUE(at::equal(keep, bools({0, 1, 1}, {3, 1})));
  keep = capacity_keep_mask(experts, scores, 1, 1, DropPolicy::kScore);
  EXPECT_TRUE(at::equal(keep, bools({0, 1, 0}, {3, 1})));
}

TEST(Capacity, TopTwoCountsEachChoiceAgainstItsOwnExpert) {
  // Tokens choose (0,1), (0,1), (1,0), (2,0): expert 0 gets tokens 0,1,2,3 (keeps 0,1);
  // expert 1 gets tokens 0,1,2 (keeps 0,1); expert 2 gets token 3.
  at::Tensor experts = longs({0, 1, 0, 1, 1, 0, 2, 0}, {4, 2});
  at::Tensor scores = at::ones({4, 2}, at::kDouble);
  at::Tensor keep = capacity_keep_mask(experts, scores, 3, 2, DropPolicy::kPosition);
  EXPECT_TRUE(at::equal(keep, bools({1, 1, 1, 1, 0, 0, 1, 0}, {4, 2})));
}

TEST(Capacity, DroplessKeepsEverything) {
  at::Tensor experts = longs({0, 0, 0, 0}, {4, 1});
  at::Tensor keep = capacity_keep_mask(experts, at::ones({4, 1}, at::kDouble), 2, kDropless,
                                       DropPolicy::kPosition);
  EXPECT_TRUE(keep.all().item<bool>());
}

}  // namespace
}  // namespace triage
