// A step's world totals become the figures the logs print: losses over the global batch's
// own counts, shares and loads worked out here by hand.
#include <gtest/gtest.h>

#include "train/step_metrics.h"

namespace triage {
namespace {

// Two MoE layers of 4 experts on 2 EP ranks (a world of 2), after sum_over.
StepTotals two_layer_totals() {
  StepTotals totals(/*moe_layers=*/2, /*experts=*/4, /*ep_size=*/2, 0, /*world_size=*/2);
  totals.lm_loss_sum = 30;
  totals.class_loss_sum = 6;
  totals.balance_loss = 0.8;
  totals.z_loss = 0.4;
  totals.dropped = 5;
  totals.assignments = 40;
  totals.tokens_per_expert = {{5, 5, 5, 5}, {14, 2, 2, 2}};
  totals.bound_dropped = {{0, 0}, {3, 0}};
  totals.received_rows = {{10, 10}, {16, 4}};
  return totals;
}

TEST(StepMetrics, LossesAreOverTheBatchsOwnCountsAndAuxLossesPerRankAndMicroBatch) {
  StepMetrics m;
  fill_step_metrics(two_layer_totals(), {/*targets=*/10, /*labelled=*/3, true, true, 2, 2}, m);
  EXPECT_DOUBLE_EQ(m.lm_loss, 3.0);
  EXPECT_DOUBLE_EQ(m.class_loss, 2.0);
  EXPECT_DOUBLE_EQ(m.loss, 5.0);
  EXPECT_DOUBLE_EQ(m.balance_loss, 0.2);  // 0.8 over 2 ranks x 2 micro-batches
  EXPECT_DOUBLE_EQ(m.z_loss, 0.1);
  EXPECT_DOUBLE_EQ(m.dropped_pct, 12.5);  // 5 of 40
}

TEST(StepMetrics, LoadsAndIntakeAreTheWorstLayersBusiestOverTheMean) {
  StepMetrics m;
  fill_step_metrics(two_layer_totals(), {10, 3, true, false, 2, 1}, m);
  EXPECT_DOUBLE_EQ(m.class_loss, 0.0) << "no classification head";
  EXPECT_DOUBLE_EQ(m.max_mean_load, 14.0 / 5.0);       // layer 2: 14 over a mean of 5
  EXPECT_DOUBLE_EQ(m.received_max_mean, 16.0 / 10.0);  // layer 2: 16 over a mean of 10
  EXPECT_EQ(m.tokens_per_expert, (std::vector<std::vector<int64_t>>{{5, 5, 5, 5}, {14, 2, 2, 2}}));
  EXPECT_EQ(m.bound_dropped, 3);
  EXPECT_EQ(m.bound_dropped_per_rank, (std::vector<std::vector<int64_t>>{{0, 0}, {3, 0}}));
}

}  // namespace
}  // namespace triage
