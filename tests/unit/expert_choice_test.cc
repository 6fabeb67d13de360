// Expert-choice selection on batches small enough to work out by hand.
#include <gtest/gtest.h>

#include "moe/expert_choice.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;

// Rows' scores for experts (0, 1). Expert 0's best two rows are 0 (0.9) and 1 (0.8);
// expert 1's are 2 (0.7) and 3 (0.5). Row 0 is taken by expert 0 only, and so on.
const at::Tensor kScores = doubles({0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.5, 0.5}, {4, 2});

TEST(ExpertChoice, EachExpertTakesItsCapacityBestRows) {
  ExpertChoice choice = choose_by_experts(kScores, {}, /*capacity=*/2, nullptr);
  // Columns: the row's experts by its own score (ties: lower id first).
  EXPECT_TRUE(at::equal(choice.experts_RE, longs({0, 1, 0, 1, 1, 0, 0, 1}, {4, 2})));
  EXPECT_TRUE(at::equal(choice.taken_RE, bools({1, 0, 1, 0, 1, 0, 0, 1}, {4, 2})));
}

TEST(ExpertChoice, IneligibleRowsAreNeverTaken) {
  // Without row 2, expert 1's best two are row 3 (0.5) and row 1 (0.2).
  ExpertChoice choice = choose_by_experts(kScores, bools({1, 1, 0, 1}, {4}), 2, nullptr);
  EXPECT_TRUE(at::equal(choice.taken_RE, bools({1, 0, 1, 1, 0, 0, 0, 1}, {4, 2})));
  // Capacity beyond the eligible rows leaves the ineligible one untaken still.
  ExpertChoice all = choose_by_experts(kScores, bools({1, 1, 0, 1}, {4}), 4, nullptr);
  EXPECT_EQ(all.taken_RE[2].sum().item<int64_t>(), 0);
  EXPECT_EQ(all.taken_RE.sum().item<int64_t>(), 6);
}

TEST(ExpertChoice, TiesGoToTheEarlierRow) {
  const at::Tensor even = at::full({5, 1}, 0.5, at::kDouble);
  ExpertChoice choice = choose_by_experts(even, {}, 2, nullptr);
  EXPECT_TRUE(at::equal(choice.taken_RE, bools({1, 1, 0, 0, 0}, {5, 1})));
}

}  // namespace
}  // namespace triage
