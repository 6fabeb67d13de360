// StepTotals: micro-batches' MoE statistics add up per layer, expert and EP rank, and the
// sum over ranks returns every field to its own name (the packing is invisible).
#include <gtest/gtest.h>

#include "fake_communicator.h"
#include "train/step_totals.h"

namespace triage {
namespace {

// A world of three identical ranks: the all-reduce triples every value.
struct ThreeIdenticalRanks : testing_support::OneRankCommunicator {
  int size() const override { return 3; }
  void allreduce_sum_(at::Tensor& tensor) override { tensor.mul_(3); }
};

MoeStats stats(std::vector<int64_t> tokens, int64_t dropped, std::vector<int64_t> bound) {
  MoeStats s;
  s.tokens_per_expert = std::move(tokens);
  s.assignments = 10;
  s.dropped = dropped;
  s.bound_dropped_per_rank = std::move(bound);
  return s;
}

TEST(StepTotals, MicroBatchesAddUpPerLayerExpertAndRank) {
  StepTotals totals(/*moe_layers=*/2, /*experts=*/3, /*ep_size=*/2);
  totals.add({stats({1, 2, 3}, 1, {0, 4}), stats({4, 5, 6}, 0, {1, 0})});
  totals.add({stats({10, 0, 0}, 2, {0, 1}), stats({0, 0, 7}, 0, {0, 0})});
  EXPECT_EQ(totals.tokens_per_expert, (std::vector<std::vector<double>>{{11, 2, 3}, {4, 5, 13}}));
  EXPECT_EQ(totals.bound_dropped, (std::vector<std::vector<double>>{{0, 5}, {1, 0}}));
  EXPECT_EQ(totals.dropped, 3);
  EXPECT_EQ(totals.assignments, 40);
}

TEST(StepTotals, SumOverRanksReturnsEveryFieldToItsName) {
  StepTotals totals(/*moe_layers=*/1, /*experts=*/2, /*ep_size=*/2);
  totals.lm_loss_sum = 1.5;
  totals.class_loss_sum = 2;
  totals.balance_loss = 0.25;
  totals.z_loss = 0.125;
  totals.add({stats({7, 8}, 1, {2, 3})});
  totals.preemption_votes = 15;
  ThreeIdenticalRanks world;
  totals.sum_over(world);
  EXPECT_EQ(totals.lm_loss_sum, 4.5);
  EXPECT_EQ(totals.class_loss_sum, 6);
  EXPECT_EQ(totals.balance_loss, 0.75);
  EXPECT_EQ(totals.z_loss, 0.375);
  EXPECT_EQ(totals.dropped, 3);
  EXPECT_EQ(totals.assignments, 30);
  EXPECT_EQ(totals.tokens_per_expert, (std::vector<std::vector<double>>{{21, 24}}));
  EXPECT_EQ(totals.bound_dropped, (std::vector<std::vector<double>>{{6, 9}}));
  EXPECT_EQ(totals.preemption_votes, 45);
}

// Each rank's received rows land in its own column, so the sum over ranks is a table of
// every rank's intake (a world of three identical ranks triples rank 1's column only).
TEST(StepTotals, ReceivedRowsGoToThisRanksColumn) {
  StepTotals totals(/*moe_layers=*/2, /*experts=*/2, /*ep_size=*/1, /*world_rank=*/1,
                    /*world_size=*/3);
  MoeStats first = stats({1, 1}, 0, {0}), second = stats({2, 2}, 0, {0});
  first.received_rows = 5;
  second.received_rows = 7;
  totals.add({first, second});
  totals.add({first, second});
  EXPECT_EQ(totals.received_rows, (std::vector<std::vector<double>>{{0, 10, 0}, {0, 14, 0}}));
  ThreeIdenticalRanks world;
  totals.sum_over(world);
  EXPECT_EQ(totals.received_rows, (std::vector<std::vector<double>>{{0, 30, 0}, {0, 42, 0}}));
}

}  // namespace
}  // namespace triage
