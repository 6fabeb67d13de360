// Amino-acid tokenizer ids, worked out from the documented table.
#include <gtest/gtest.h>

#include "data/tokenizer.h"

namespace triage {
namespace {

TEST(AminoTokenizer, WrapsResiduesInBosAndEos) {
  // A is the first residue (id 4), C the second (5), Y the last (4 + 19 = 23).
  EXPECT_EQ(AminoTokenizer().encode("ACY"), (std::vector<int64_t>{1, 4, 5, 23, 2}));
}

TEST(AminoTokenizer, MapsRareAndUnknownLettersToUnk) {
  EXPECT_EQ(AminoTokenizer().encode("XBZ"), (std::vector<int64_t>{1, 3, 3, 3, 2}));
}

TEST(AminoTokenizer, AcceptsLowercase) {
  EXPECT_EQ(AminoTokenizer().encode("acy"), AminoTokenizer().encode("ACY"));
}

TEST(AminoTokenizer, DecodeInvertsEncodeForStandardResidues) {
  const std::string all = AminoTokenizer::kResidues;
  EXPECT_EQ(AminoTokenizer().decode(AminoTokenizer().encode(all)), all);
}

}  // namespace
}  // namespace triage
