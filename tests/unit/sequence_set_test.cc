// De-duplication and the held-out split.
#include <gtest/gtest.h>

#include <set>

#include "data/sequence_set.h"

namespace triage {
namespace {

SequenceRecord record(const std::string& name, const std::string& residues) {
  SequenceRecord r;
  r.name = name;
  r.residues = residues;
  return r;
}

TEST(Deduplicate, DropsRepeatedNamesAndRepeatedResiduesKeepingTheFirst) {
  Deduplicated d = deduplicate({record("a", "ACD"), record("b", "EFG"), record("a", "KLM"),
                                record("c", "ACD"), record("d", "MNP")});
  ASSERT_EQ(d.records.size(), 3u);
  EXPECT_EQ(d.records[0].name, "a");
  EXPECT_EQ(d.records[0].residues, "ACD");
  EXPECT_EQ(d.records[1].name, "b");
  EXPECT_EQ(d.records[2].name, "d");
  EXPECT_EQ(d.dropped, 2);
}

std::vector<SequenceRecord> numbered(int n) {
  std::vector<SequenceRecord> records;
  for (int i = 0; i < n; ++i) records.push_back(record("s" + std::to_string(i), "A"));
  return records;
}

TEST(HoldOut, HoldsOutTheRoundedFractionAndPartitionsTheInput) {
  Split split = hold_out(numbered(20), 0.25, 3);
  EXPECT_EQ(split.test.size(), 5u);
  EXPECT_EQ(split.train.size(), 15u);
  std::set<std::string> names;
  for (const auto& r : split.train) names.insert(r.name);
  for (const auto& r : split.test) names.insert(r.name);
  EXPECT_EQ(names.size(), 20u);
}

TEST(HoldOut, IsDeterministicPerSeedAndKeepsInputOrder) {
  Split a = hold_out(numbered(20), 0.25, 3), b = hold_out(numbered(20), 0.25, 3);
  Split c = hold_out(numbered(20), 0.25, 4);
  std::vector<std::string> a_names, b_names, c_names;
  for (const auto& r : a.test) a_names.push_back(r.name);
  for (const auto& r : b.test) b_names.push_back(r.name);
  for (const auto& r : c.test) c_names.push_back(r.name);
  EXPECT_EQ(a_names, b_names);
  EXPECT_NE(a_names, c_names);
  for (size_t i = 1; i < a.train.size(); ++i)
    EXPECT_LT(std::stoi(a.train[i - 1].name.substr(1)), std::stoi(a.train[i].name.substr(1)));
}

std::vector<SequenceRecord> families(const std::vector<int>& sizes) {
  std::vector<SequenceRecord> records;
  for (size_t label = 0; label < sizes.size(); ++label)
    for (int i = 0; i < sizes[label]; ++i) {
      records.push_back(record("f" + std::to_string(label) + "_" + std::to_string(i), "A"));
      records.back().label = int64_t(label);
    }
  return records;
}

std::vector<int> held_per_label(const Split& split, size_t labels) {
  std::vector<int> held(labels, 0);
  for (const auto& r : split.test) ++held[size_t(r.label)];
  return held;
}

TEST(HoldOut, IsStratifiedByLabelSoEveryFamilyOfTwoOrMoreIsHeldOut) {
  // 20% of 10, 3, 2 and 1: 2, round(0.6) = 1, round(0.4) = 0 raised to 1, none of 1.
  const Split split = hold_out(families({10, 3, 2, 1}), 0.2, 5);
  EXPECT_EQ(held_per_label(split, 4), (std::vector<int>{2, 1, 1, 0}));
  EXPECT_EQ(split.train.size() + split.test.size(), 16u);
}

TEST(HoldOut, NeverHoldsOutAWholeFamily) {
  const Split split = hold_out(families({2, 4}), 0.9, 5);  // round(1.8) = 2 of 2: keep one
  EXPECT_EQ(held_per_label(split, 2), (std::vector<int>{1, 3}));
}

TEST(HoldOut, ZeroFractionKeepsEverythingForTraining) {
  Split split = hold_out(numbered(7), 0.0, 1);
  EXPECT_EQ(split.train.size(), 7u);
  EXPECT_TRUE(split.test.empty());
}

}  // namespace
}  // namespace triage
