// train.keep_best / train.early_stop_patience: the best evaluation so far and when to stop.
#include <gtest/gtest.h>

#include "train/best_model.h"

namespace triage {
namespace {

EvalMetrics eval(int64_t step, double lm_loss, double class_loss = 0) {
  EvalMetrics m;
  m.step = step;
  m.lm_loss = lm_loss;
  m.class_loss = class_loss;
  return m;
}

TEST(BestModel, KeepsTheLowestFigureAndCountsEvaluationsSinceIt) {
  BestModel best(KeepBest::kEvalLmLoss, /*patience=*/2);
  EXPECT_TRUE(best.record(eval(10, 3.0)));
  EXPECT_TRUE(best.record(eval(20, 2.5)));
  EXPECT_FALSE(best.record(eval(30, 2.5)));  // equal is no improvement
  EXPECT_FALSE(best.should_stop());
  EXPECT_FALSE(best.record(eval(40, 2.9)));
  EXPECT_TRUE(best.should_stop());
  EXPECT_EQ(best.best_step(), 20);
  EXPECT_DOUBLE_EQ(best.best_value(), 2.5);
}

TEST(BestModel, EvalLossAddsTheClassificationLoss) {
  BestModel best(KeepBest::kEvalLoss, 0);
  EXPECT_TRUE(best.record(eval(1, 2.0, 1.0)));
  EXPECT_FALSE(best.record(eval(2, 1.5, 2.0)));  // lm better, task loss 3.5 worse than 3.0
  EXPECT_DOUBLE_EQ(best.best_value(), 3.0);
  EXPECT_FALSE(best.should_stop()) << "patience 0 never stops";
}

TEST(BestModel, NoneRecordsNothing) {
  BestModel best(KeepBest::kNone, 0);
  EXPECT_FALSE(best.record(eval(1, 1.0)));
  EXPECT_FALSE(best.best_step());
}

TEST(BestModel, AResumedRunMustBeatTheRestoredBest) {
  BestModel best(KeepBest::kEvalLmLoss, 1);
  best.restore(50, 2.0);
  EXPECT_FALSE(best.record(eval(60, 2.1)));
  EXPECT_TRUE(best.should_stop());
  EXPECT_EQ(best.best_step(), 50);
}

}  // namespace
}  // namespace triage
