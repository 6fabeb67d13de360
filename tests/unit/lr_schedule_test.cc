// The warmup + cosine schedule: linear ramp to the peak, half cosine down to the floor.
#include <gtest/gtest.h>

#include "train/lr_schedule.h"

namespace triage {
namespace {

TEST(LearningRate, RampsLinearlyDuringWarmup) {
  EXPECT_DOUBLE_EQ(learning_rate(0, 100, 10, 1.0, 0.1), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(4, 100, 10, 1.0, 0.1), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(9, 100, 10, 1.0, 0.1), 1.0);
}

TEST(LearningRate, StartsTheCosineAtThePeakAndEndsAtTheFloor) {
  EXPECT_DOUBLE_EQ(learning_rate(10, 101, 10, 2.0, 0.1), 2.0);
  EXPECT_DOUBLE_EQ(learning_rate(100, 101, 10, 2.0, 0.1), 0.2);
}

TEST(LearningRate, IsHalfwayBetweenPeakAndFloorHalfwayThroughTheDecay) {
  // 10 warmup steps, decay over steps 10..110: step 60 is halfway, cos(pi/2) = 0.
  EXPECT_NEAR(learning_rate(60, 111, 10, 1.0, 0.0), 0.5, 1e-15);
}

TEST(LearningRate, WithoutWarmupStartsAtThePeak) {
  EXPECT_DOUBLE_EQ(learning_rate(0, 50, 0, 3e-3, 0.1), 3e-3);
}

}  // namespace
}  // namespace triage
