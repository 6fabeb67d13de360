// After each step the loop evaluates, saves and stops as these rules say, the same on
// every rank: a save happens once whatever asks for it, and the last step finishes the
// run whatever else asks.
#include <gtest/gtest.h>

#include "train/step_decisions.h"

namespace triage {
namespace {

TrainConfig ten_steps() {
  TrainConfig train;
  train.steps = 10;
  train.eval_every = 4;
  train.checkpoint_every = 5;
  return train;
}

TEST(StepDecisions, EvaluatesEveryEvalEveryStepsAndAfterTheLastWhenSomethingIsHeldOut) {
  const TrainConfig train = ten_steps();
  EXPECT_TRUE(evaluates_after(4, train, true));
  EXPECT_TRUE(evaluates_after(8, train, true));
  EXPECT_TRUE(evaluates_after(10, train, true));
  EXPECT_FALSE(evaluates_after(5, train, true));
  EXPECT_FALSE(evaluates_after(4, train, /*held_out=*/false));
}

TEST(StepDecisions, PlainStepsGoOnAndSaveOnlyAtTheCheckpointInterval) {
  const TrainConfig train = ten_steps();
  EXPECT_FALSE(after_step(3, train, 0, false, false, false).save);
  EXPECT_TRUE(after_step(5, train, 0, false, false, false).save);
  EXPECT_EQ(after_step(5, train, 0, false, false, false).goes, RunGoes::kOn);
}

TEST(StepDecisions, AnImprovementSavesItsStep) {
  const AfterStep next = after_step(4, ten_steps(), 0, /*improved=*/true, false, false);
  EXPECT_TRUE(next.save);
  EXPECT_EQ(next.goes, RunGoes::kOn);
}

TEST(StepDecisions, EachReasonToStopSavesAndStopsThenTheFirstInOrderNamesIt) {
  const TrainConfig train = ten_steps();
  const AfterStep early = after_step(7, train, 7, false, /*stop_early=*/true, true);
  EXPECT_TRUE(early.save);
  EXPECT_EQ(early.goes, RunGoes::kStoppedEarly);
  const AfterStep asked = after_step(7, train, /*stop_after=*/7, false, false, true);
  EXPECT_TRUE(asked.save);
  EXPECT_EQ(asked.goes, RunGoes::kStopped);
  const AfterStep preempted = after_step(7, train, 0, false, false, /*preempted=*/true);
  EXPECT_TRUE(preempted.save);
  EXPECT_EQ(preempted.goes, RunGoes::kPreempted);
}

TEST(StepDecisions, TheLastStepFinishesWithACheckpointWhateverElseAsks) {
  const AfterStep last = after_step(10, ten_steps(), 10, false, true, true);
  EXPECT_TRUE(last.save);
  EXPECT_EQ(last.goes, RunGoes::kFinished);
}

}  // namespace
}  // namespace triage
