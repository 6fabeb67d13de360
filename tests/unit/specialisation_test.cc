// Normalised mutual information of (family, expert) counts.
#include <gtest/gtest.h>

#include <cmath>

#include "train/specialisation.h"

namespace triage {
namespace {

TEST(NormalizedMutualInformation, IsOneWhenEachFamilyHasItsOwnExpert) {
  EXPECT_NEAR(normalized_mutual_information({{5, 0, 0}, {0, 7, 0}, {0, 0, 3}}), 1.0, 1e-12);
}

TEST(NormalizedMutualInformation, IsZeroWhenExpertsIgnoreTheFamily) {
  // Every family spread over the experts in the same proportions.
  EXPECT_NEAR(normalized_mutual_information({{2, 4, 6}, {1, 2, 3}}), 0.0, 1e-12);
}

TEST(NormalizedMutualInformation, MatchesTheDefinitionOnATwoByTwoTable) {
  // Family 0: 2 tokens to expert 0; family 1: one token to each expert. N = 4.
  const double mutual = 0.5 * std::log(0.5 / (0.5 * 0.75)) + 0.25 * std::log(0.25 / (0.5 * 0.75)) +
                        0.25 * std::log(0.25 / (0.5 * 0.25));
  const double h_family = std::log(2.0);
  const double h_expert = -(0.75 * std::log(0.75) + 0.25 * std::log(0.25));
  EXPECT_NEAR(normalized_mutual_information({{2, 0}, {1, 1}}), mutual / ((h_family + h_expert) / 2),
              1e-12);
}

TEST(NormalizedMutualInformation, IgnoresExpertsNoTokenChose) {
  EXPECT_NEAR(normalized_mutual_information({{3, 0, 0}, {0, 0, 4}}), 1.0, 1e-12);
}

TEST(NormalizedMutualInformation, IsZeroForAnEmptyTable) {
  EXPECT_EQ(normalized_mutual_information({{0, 0}, {0, 0}}), 0.0);
}

}  // namespace
}  // namespace triage
