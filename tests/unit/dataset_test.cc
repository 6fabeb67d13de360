// Datasets: labels, length policy, text chunks, batches and the example order.
#include <gtest/gtest.h>

#include <set>

#include "data/dataset.h"
#include "data/tokenizer.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;

DataConfig protein_files(const std::string& paths) {
  DataConfig data;
  data.kind = DataKind::kProteins;
  data.path = paths;
  data.seq_len = 8;
  data.test_fraction = 0.0;
  return data;
}

TEST(ProteinDataset, LabelsEachSequenceByItsFile) {
  const std::string a = write_temp_file("kinases.fa", ">k1\nACDE\n>k2\nGHIK\n");
  const std::string b = write_temp_file("globins.fa", ">g1\nLMNP\n");
  Dataset d = load_dataset(protein_files(a + "," + b), 1);
  EXPECT_EQ(d.label_names, (std::vector<std::string>{"kinases", "globins"}));
  std::multiset<int64_t> labels;
  for (const auto& e : d.train.examples()) labels.insert(e.label);
  EXPECT_EQ(labels, (std::multiset<int64_t>{0, 0, 1}));
}

TEST(ProteinDataset, FamilyIsTheStockholmIdElseTheFileNameWithoutItsCount) {
  const std::string sto = write_temp_file(
      "PF00042_full.sto", "# STOCKHOLM 1.0\n#=GF ID   Globin\n#=GF AC   PF00042\ns1 AC-DE\n//\n");
  const std::string fasta630 = write_temp_file("kinases630.fa", ">k1\nMNPQ\n");
  const std::string fasta12 = write_temp_file("kinases12.fa", ">k2\nGHIK\n");
  Dataset d = load_dataset(protein_files(sto + "," + fasta630 + "," + fasta12), 1);
  EXPECT_EQ(d.label_names, (std::vector<std::string>{"Globin", "kinases"}));
  std::multiset<int64_t> labels;
  for (const auto& e : d.train.examples()) labels.insert(e.label);
  EXPECT_EQ(labels, (std::multiset<int64_t>{0, 1, 1})) << "two files of one family share it";
}

TEST(ProteinDataset, MaxPerFamilyBalancesTheFamiliesAndCountsWhatItLeftOut) {
  std::string many = ">a0\nACDE\n", few = ">b0\nWYWY\n";
  const std::string residues = "ACDEFGHIKLMNPQRSTVWY";
  for (int i = 1; i < 6; ++i)
    many += ">a" + std::to_string(i) + "\n" + residues.substr(i, 4) + "\n";
  const std::string a = write_temp_file("many.fa", many), b = write_temp_file("few.fa", few);
  DataConfig data = protein_files(a + "," + b);
  data.max_per_family = 2;
  Dataset d = load_dataset(data, 1);
  std::multiset<int64_t> labels;
  for (const auto& e : d.train.examples()) labels.insert(e.label);
  EXPECT_EQ(labels, (std::multiset<int64_t>{0, 0, 1}));
  EXPECT_EQ(d.over_family_limit, 4);
}

TEST(ProteinDataset, LabelsByTheCaptureGroupOfTheLabelPattern) {
  const std::string a =
      write_temp_file("mixed.fa", ">HBA_HUMAN\nACDE\n>MYG_HORSE\nGHIK\n>HBB_HUMAN\nLMNP\n");
  DataConfig data = protein_files(a);
  data.label_pattern = "_([A-Z]+)$";
  Dataset d = load_dataset(data, 1);
  EXPECT_EQ(d.label_names, (std::vector<std::string>{"HORSE", "HUMAN"}));  // sorted
  std::multiset<int64_t> labels;
  for (const auto& e : d.train.examples()) labels.insert(e.label);
  EXPECT_EQ(labels, (std::multiset<int64_t>{0, 1, 1}));
}

TEST(ProteinDataset, NamesTheSequenceThatDoesNotMatchThePattern) {
  const std::string a = write_temp_file("nolabel.fa", ">HBA_HUMAN\nACDE\n>orphan\nGHIK\n");
  DataConfig data = protein_files(a);
  data.label_pattern = "_([A-Z]+)$";
  EXPECT_EQ(error_of([&] { load_dataset(data, 1); }),
            a + ": sequence orphan (line 3) does not match data.label_pattern _([A-Z]+)$");
}

TEST(ProteinDataset, SkipsOrCropsTooLongSequencesAndCountsThem) {
  const std::string a = write_temp_file("long.fa", ">short\nACD\n>long\nACDEFGHIKLMN\n");
  DataConfig data = protein_files(a);
  data.too_long = TooLong::kSkip;
  Dataset skipped = load_dataset(data, 1);
  EXPECT_EQ(skipped.train.size(), 1u);
  EXPECT_EQ(skipped.skipped_too_long, 1);
  data.too_long = TooLong::kCrop;
  Dataset cropped = load_dataset(data, 1);
  EXPECT_EQ(cropped.cropped_too_long, 1);
  for (const auto& e : cropped.train.examples()) EXPECT_LE(e.tokens.size(), 8u);
}

TEST(TextDataset, CutsTheFileIntoSeqLenByteChunks) {
  DataConfig data;
  data.kind = DataKind::kText;
  data.path = write_temp_file("text.txt", "abcdefghij");  // 10 bytes: chunks "abcd", "efgh"
  data.seq_len = 4;
  data.test_fraction = 0.0;
  Dataset d = load_dataset(data, 1);
  ASSERT_EQ(d.train.size(), 2u);
  EXPECT_EQ(d.train.at(0).tokens, (std::vector<int64_t>{'a', 'b', 'c', 'd'}));
  EXPECT_EQ(d.train.at(1).tokens, (std::vector<int64_t>{'e', 'f', 'g', 'h'}));
}

TEST(TextDataset, RefusesAFileShorterThanOneSequence) {
  DataConfig data;
  data.kind = DataKind::kText;
  data.path = write_temp_file("short.txt", "abc");
  data.seq_len = 4;
  EXPECT_EQ(error_of([&] { load_dataset(data, 1); }),
            data.path + ": 3 bytes; expected at least data.seq_len (4)");
}

TEST(Batch, PadsRowsAndShiftsTargetsByOne) {
  Example a{{1, 5, 6, 2}, 3}, b{{1, 7, 2}, 0};
  Batch batch = make_batch({&a, &b, nullptr}, 5);
  EXPECT_TRUE(
      at::equal(batch.tokens_BL, longs({1, 5, 6, 2, 0, 1, 7, 2, 0, 0, 0, 0, 0, 0, 0}, {3, 5})));
  EXPECT_TRUE(
      at::equal(batch.real_BL, longs({1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}, {3, 5})));
  EXPECT_TRUE(
      at::equal(batch.targets_BL, longs({5, 6, 2, 0, 0, 7, 2, 0, 0, 0, 0, 0, 0, 0, 0}, {3, 5})));
  EXPECT_TRUE(
      at::equal(batch.target_BL, longs({1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}, {3, 5})));
  EXPECT_TRUE(at::equal(batch.labels_B, longs({3, 0, -1}, {3})));
}

TEST(SmallFamilies, AreNamedOnceForNoHeldOutSequenceAndOnceForTooFewToTrainOn) {
  Dataset data;
  data.label_names = {"globin", "kinase", "rare"};
  for (int i = 0; i < 20; ++i) data.train.push_back({{1}, 0});
  for (int i = 0; i < 3; ++i) data.test.push_back({{1}, 0});
  for (int i = 0; i < 9; ++i) data.train.push_back({{1}, 1});  // 9 train, none held out
  data.train.push_back({{1}, 2});                              // 1 train, none held out
  const std::vector<std::string> warnings = small_family_warnings(data);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("no held-out sequence"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("kinase (9 train, 0 held out), rare (1 train, 0 held out)"),
            std::string::npos)
      << warnings[0];
  EXPECT_EQ(warnings[0].find("globin"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find("fewer than 8 training sequences"), std::string::npos) << warnings[1];
  EXPECT_NE(warnings[1].find("rare (1 train"), std::string::npos) << warnings[1];
  EXPECT_EQ(warnings[1].find("kinase"), std::string::npos) << warnings[1];
}

TEST(SmallFamilies, WellRepresentedFamiliesGiveNoWarning) {
  Dataset data;
  data.label_names = {"a"};
  for (int i = 0; i < 10; ++i) data.train.push_back({{1}, 0});
  data.test.push_back({{1}, 0});
  EXPECT_TRUE(small_family_warnings(data).empty());
}

TEST(ExampleOrder, VisitsEveryExampleOncePerEpoch) {
  ExampleOrder order(7, 11);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::set<int64_t> seen;
    for (int64_t i = 0; i < 7; ++i) seen.insert(order.at(epoch * 7 + i));
    EXPECT_EQ(seen.size(), 7u);
  }
}

TEST(ExampleOrder, DependsOnlyOnThePositionNotOnWhatWasReadBefore) {
  ExampleOrder sequential(10, 5), resumed(10, 5);
  std::vector<int64_t> first, second;
  for (int64_t p = 0; p < 35; ++p) first.push_back(sequential.at(p));
  for (int64_t p = 23; p < 35; ++p) second.push_back(resumed.at(p));
  EXPECT_EQ(std::vector<int64_t>(first.begin() + 23, first.end()), second);
}

TEST(ExampleOrder, ShufflesEachEpochDifferently) {
  ExampleOrder order(20, 5);
  std::vector<int64_t> epoch0, epoch1;
  for (int64_t i = 0; i < 20; ++i) epoch0.push_back(order.at(i));
  for (int64_t i = 20; i < 40; ++i) epoch1.push_back(order.at(i));
  EXPECT_NE(epoch0, epoch1);
}

}  // namespace
}  // namespace triage
