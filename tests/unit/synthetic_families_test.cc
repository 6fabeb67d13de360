// Synthetic families: labels, lengths, determinism, and that families really differ.
#include <gtest/gtest.h>

#include <array>

#include "data/synthetic_families.h"

namespace triage {
namespace {

SyntheticFamilies small_options() {
  SyntheticFamilies o;
  o.families = 3;
  o.sequences = 60;
  o.min_length = 40;
  o.max_length = 50;
  o.seed = 7;
  return o;
}

TEST(SyntheticFamilies, LabelsRoundRobinAndLengthsInRange) {
  auto records = generate_families(small_options());
  ASSERT_EQ(records.size(), 60u);
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].label, int64_t(i % 3));
    EXPECT_GE(records[i].residues.size(), 40u);
    EXPECT_LE(records[i].residues.size(), 50u);
  }
}

TEST(SyntheticFamilies, SameSeedSameSequencesOtherSeedOthers) {
  auto a = generate_families(small_options());
  auto b = generate_families(small_options());
  SyntheticFamilies other = small_options();
  other.seed = 8;
  auto c = generate_families(other);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].residues, b[i].residues);
  EXPECT_NE(a[0].residues, c[0].residues);
}

// Residue-pair counts, pooled per family: a sequence's pairs are closer to its own family's
// profile than to another's (nearest-centroid classification well above chance = 1/3).
TEST(SyntheticFamilies, FamiliesHaveDistinctStatistics) {
  auto records = generate_families(small_options());
  auto pairs = [](const std::string& s) {
    std::array<double, 26 * 26> counts{};
    for (size_t i = 0; i + 1 < s.size(); ++i) counts[(s[i] - 'A') * 26 + (s[i + 1] - 'A')] += 1;
    return counts;
  };
  std::vector<std::array<double, 26 * 26>> profile(3);
  for (size_t i = 0; i < 30; ++i) {  // first half builds the profiles
    auto c = pairs(records[i].residues);
    for (size_t k = 0; k < c.size(); ++k) profile[records[i].label][k] += c[k];
  }
  int correct = 0;
  for (size_t i = 30; i < 60; ++i) {  // second half is classified
    auto c = pairs(records[i].residues);
    int best = 0;
    double best_score = -1;
    for (int f = 0; f < 3; ++f) {
      double score = 0;
      for (size_t k = 0; k < c.size(); ++k) score += c[k] * profile[f][k];
      if (score > best_score) best_score = score, best = f;
    }
    correct += best == records[i].label;
  }
  EXPECT_GE(correct, 27) << "of 30";
}

}  // namespace
}  // namespace triage
