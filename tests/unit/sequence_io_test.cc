// FASTA and Stockholm reading: records, gap stripping, gzip, and one message per mistake.
#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>

#include "common/error.h"
#include "data/sequence_io.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;

std::string write_file(const std::string& name, const std::string& text) {
  return write_temp_file(name, text);
}

std::string read_error(const std::string& path, int64_t max_residues = 0) {
  return error_of([&] { read_sequences(path, max_residues); });
}

TEST(Fasta, ReadsMultiLineRecordsWithNamesAndStartLines) {
  auto path = write_file("two.fa", ">seq1 a description\nACDE\nFG\n\n>seq2\nklm\n");
  auto records = read_fasta(path);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].name, "seq1");
  EXPECT_EQ(records[0].residues, "ACDEFG");
  EXPECT_EQ(records[0].line, 1);
  EXPECT_EQ(records[1].name, "seq2");
  EXPECT_EQ(records[1].residues, "KLM");  // insert-state lowercase is uppercased
  EXPECT_EQ(records[1].line, 5);
}

TEST(Fasta, StripsAlignmentGaps) {
  auto records = read_fasta(write_file("gaps.fa", ">a\nAC--D..E\n"));
  EXPECT_EQ(records[0].residues, "ACDE");
}

TEST(Fasta, ReadsGzipCompressedFiles) {
  std::string path = testing::TempDir() + "packed.fa.gz";
  gzFile out = gzopen(path.c_str(), "wb");
  ASSERT_NE(out, nullptr);
  gzputs(out, ">zipped\nMKV\n");
  gzclose(out);
  auto records = read_sequences(path);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].residues, "MKV");
}

TEST(Stockholm, JoinsInterleavedBlocksAndSkipsMarkup) {
  auto path = write_file("two.sto",
                         "# STOCKHOLM 1.0\n#=GF ID test\n\nA/1-5  AC-.D\nB/2-4  .KL\n\n"
                         "A/1-5  EF\nB/2-4  M-\n#=GC SS_cons  EEEEE\n//\n");
  auto records = read_sequences(path);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].name, "A/1-5");
  EXPECT_EQ(records[0].residues, "ACDEF");
  EXPECT_EQ(records[0].line, 4);
  EXPECT_EQ(records[1].residues, "KLM");
}

TEST(SequenceFiles, MissingFileIsNamed) {
  EXPECT_EQ(read_error("/nonexistent/x.fa"), "/nonexistent/x.fa: cannot open the sequence file");
}

TEST(SequenceFiles, EmptyFileIsRefused) {
  auto path = write_file("empty.fa", "");
  EXPECT_EQ(read_error(path), path + ": no sequences found");
}

TEST(SequenceFiles, ResiduesBeforeAnyHeaderAreRefused) {
  auto path = write_file("headless.fa", "ACDEFGHIKLMNPQRSTVWYACDEF\n>late\nAC\n");
  EXPECT_EQ(read_error(path), path +
                                  ":1: found 'ACDEFGHIKLMNPQRSTVWY...'; expected a FASTA header "
                                  "line starting with '>'");
}

TEST(SequenceFiles, NonLetterResidueNamesSequenceAndLine) {
  auto path = write_file("digit.fa", ">ok\nAC\n>bad\nAC7D\n");
  EXPECT_EQ(read_error(path),
            path + ":4: sequence bad has '7'; expected amino-acid letters, '-' or '.'");
}

TEST(SequenceFiles, HeaderWithoutResiduesIsRefused) {
  auto path = write_file("hollow.fa", ">first\nAC\n>second\n");
  EXPECT_EQ(read_error(path), path + ":3: sequence second is empty");
}

TEST(SequenceFiles, SequenceLongerThanTheContextIsRefused) {
  auto path = write_file("long.fa", ">short\nACD\n>long\nACDEFG\n");
  EXPECT_EQ(
      read_error(path, 5),
      path +
          ":3: sequence long has 6 residues; expected at most 5 (data.seq_len less BOS and EOS), "
          "or data.too_long: crop or skip");
  EXPECT_EQ(read_error(path, 6), "");
}

TEST(SequenceFiles, StockholmWithoutItsHeaderIsReadAsFastaAndRefused) {
  auto path = write_file("nohead.sto", "A/1-5  ACDEF\n//\n");
  EXPECT_EQ(read_error(path),
            path + ":1: found 'A/1-5  ACDEF'; expected a FASTA header line starting with '>'");
}

TEST(Stockholm, ReaderDemandsTheStockholmHeader) {
  auto path = write_file("plain.sto", ">x\nAC\n");
  EXPECT_EQ(error_of([&] { read_stockholm(path); }),
            path + ":1: found '>x'; expected '# STOCKHOLM 1.0'");
}

TEST(Stockholm, RefusesALineThatIsNotNameAndResidues) {
  auto path = write_file("words.sto", "# STOCKHOLM 1.0\nA/1-5  ACDEF\na b c\n//\n");
  EXPECT_EQ(read_error(path), path + ":3: found 'a b c'; expected 'NAME  ALIGNED-RESIDUES'");
}

TEST(Stockholm, RefusesATruncatedAlignmentWithoutTheEndMarker) {
  auto path = write_file("cut.sto", "# STOCKHOLM 1.0\nA/1-5  ACDEF\nB/1-5  ACD");
  EXPECT_EQ(read_error(path),
            path + ":3: the alignment ends without '//'; expected a complete Stockholm file");
}

// Debian's hmmer2-doc ships Pfam seed alignments; skip where the package is absent.
TEST(RealData, ReadsPfamFibronectinSeedAlignment) {
  const std::string path = "/usr/share/doc/hmmer2/tutorial/fn3.sto.gz";
  if (!std::ifstream(path)) GTEST_SKIP() << path << " not installed (Debian hmmer2-doc)";
  auto records = read_sequences(path);
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.front().name.find('/') != std::string::npos, true) << records.front().name;
  for (const auto& r : records)
    EXPECT_EQ(r.residues.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), std::string::npos)
        << r.name;
}

}  // namespace
}  // namespace triage
