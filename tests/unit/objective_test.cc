// Loss sums: next-token and sequence-label cross-entropy, masked.
#include <gtest/gtest.h>

#include <cmath>

#include "test_support.h"
#include "train/objective.h"

namespace triage {
namespace {

using namespace testing_support;

TEST(TokenCrossEntropy, SumsMinusLogProbabilityOfEachRealTarget) {
  // One row, two positions, vocabulary 2. Position 1 is padding and must not count.
  at::Tensor logits = doubles({0.0, std::log(3.0), 5.0, -5.0}, {1, 2, 2});
  at::Tensor targets = longs({1, 0}, {1, 2});
  at::Tensor real = longs({1, 0}, {1, 2});
  // softmax(0, log 3) = (1/4, 3/4): -log(3/4).
  EXPECT_NEAR(token_cross_entropy_sum(logits, targets, real).item<double>(), -std::log(0.75),
              1e-12);
}

TEST(SequenceCrossEntropy, SkipsRowsWithoutALabel) {
  at::Tensor logits = doubles({std::log(1.0), std::log(4.0), 9.0, 1.0}, {2, 2});
  at::Tensor labels = longs({0, -1}, {2});
  EXPECT_NEAR(sequence_cross_entropy_sum(logits, labels).item<double>(), -std::log(0.2), 1e-12);
}

TEST(CorrectPredictions, CountsArgmaxHitsAmongLabelledRows) {
  at::Tensor logits = doubles({1, 0, 0, 1, 1, 0}, {3, 2});
  EXPECT_EQ(correct_predictions(logits, longs({0, 0, -1}, {3})), 1);
}

}  // namespace
}  // namespace triage
