// Expert-choice selection on batches small enough to work out by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "common/error.h"
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

// Against a naive loop over many rows with few distinct scores (ties everywhere, scores 0
// and 1 included) and some ineligible rows: each expert takes the C best eligible rows,
// earlier rows first among equal scores.
TEST(ExpertChoice, RadixSelectionTakesWhatANaiveOrderingTakes) {
  constexpr int64_t kRows = 300, kExperts = 5;
  at::Generator gen = generator(13);
  const at::Tensor scores = at::randint(0, 7, {kRows, kExperts}, gen, at::kDouble) / 6.0;
  const at::Tensor eligible = at::rand({kRows}, gen, at::kDouble) > 0.2;
  for (int64_t capacity : {1, 37, 150, 299, 400}) {
    const ExpertChoice choice = choose_by_experts(scores, eligible, capacity, nullptr);
    const at::Tensor taken_RE =
        at::zeros({kRows, kExperts}, at::kBool).scatter_(1, choice.experts_RE, choice.taken_RE);
    for (int64_t e = 0; e < kExperts; ++e) {
      std::vector<std::pair<double, int64_t>> ranked;  // (-score, row): best first
      for (int64_t r = 0; r < kRows; ++r)
        if (eligible[r].item<bool>()) ranked.push_back({-scores[r][e].item<double>(), r});
      std::sort(ranked.begin(), ranked.end());
      std::vector<bool> want(kRows, false);
      for (size_t i = 0; i < ranked.size() && int64_t(i) < capacity; ++i)
        want[size_t(ranked[i].second)] = true;
      for (int64_t r = 0; r < kRows; ++r)
        ASSERT_EQ(taken_RE[r][e].item<bool>(), want[size_t(r)])
            << "capacity " << capacity << ", expert " << e << ", row " << r;
    }
  }
}

// Where the slices lie: 0 is one per EP group (8 ranks in EP groups of 4: 2 slices, each
// one group's 4 ranks); a multiple of the ranks gives each rank whole slices; 1 spans the
// world; a slice across parts of EP groups is refused, naming the key.
TEST(ExpertChoice, SlicesLieOnWholeRanksOfTheWorldOrOfOneExpertParallelGroup) {
  const ExpertChoiceSlices per_group = expert_choice_slices(0, 8, 4);
  EXPECT_EQ(per_group.span, 4);
  EXPECT_EQ(per_group.per_rank, 1);
  EXPECT_EQ(expert_choice_slices(1, 8, 4).span, 8);
  EXPECT_EQ(expert_choice_slices(16, 8, 4).per_rank, 2);
  EXPECT_EQ(expert_choice_slices(16, 8, 4).span, 1);
  EXPECT_EQ(expert_choice_slices(2, 1, 1).per_rank, 2) << "the reference cuts its batch alike";
  EXPECT_EQ(error_of([] { expert_choice_slices(4, 8, 4); }),
            "moe.expert_choice_slices = 4 on 8 ranks (parallel.expert 4): expected 1, the number "
            "of EP groups (2) or a multiple of the ranks");
}

}  // namespace
}  // namespace triage
