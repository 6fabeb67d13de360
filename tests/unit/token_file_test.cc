// Token files (data.kind: tokens): the layout read as written, bad files refused in one
// line, documents held out whole and packed into windows.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <set>

#include "data/dataset.h"
#include "data/packed_windows.h"
#include "data/token_file.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;

// The layout of token_file.h, written out field by field: a written file's bytes do not
// come from the code under test.
struct Written {
  std::vector<std::vector<uint32_t>> documents;  // ids, without the end-of-document id
  uint32_t id_bytes = 2, eod = 0;
  uint64_t vocab = 100;
  std::vector<uint64_t> starts;  // empty: the true starts
  int64_t drop_bytes = 0;        // cut from the end
  std::string magic = "TRIAGETK";
};

void put(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(char((value >> (8 * i)) & 0xff));
}

std::string write_token_file(const std::string& name, const Written& w) {
  std::string ids, starts;
  uint64_t tokens = 0;
  put(starts, 0, 8);
  for (const auto& document : w.documents) {
    for (uint32_t id : document) put(ids, id, int(w.id_bytes));
    put(ids, w.eod, int(w.id_bytes));
    tokens += document.size() + 1;
    put(starts, tokens, 8);
  }
  if (!w.starts.empty()) {
    starts.clear();
    for (uint64_t s : w.starts) put(starts, s, 8);
  }
  std::string file = w.magic;
  put(file, 1, 4);
  put(file, w.id_bytes, 4);
  put(file, w.vocab, 8);
  put(file, w.eod, 8);
  put(file, tokens, 8);
  put(file, w.documents.size(), 8);
  put(file, 0xabcd1234, 4);
  file.append(12, '\0');
  file += ids + starts;
  file.resize(file.size() - size_t(w.drop_bytes));
  const std::string path = testing::TempDir() + name;
  std::ofstream(path, std::ios::binary) << file;
  return path;
}

std::vector<int64_t> read_all(const TokenFile& file) {
  std::vector<int64_t> ids(size_t(file.tokens()));
  file.read(0, file.tokens(), ids.data());
  return ids;
}

TEST(TokenFile, ReadsSixteenBitIdsAndDocumentStartsAsWritten) {
  const TokenFile file(write_token_file("u16.tokens", {{{5, 6}, {7}, {8, 9, 10}}, 2, 1}));
  EXPECT_EQ(file.id_bytes(), 2);
  EXPECT_EQ(file.vocab_size(), 100);
  EXPECT_EQ(file.end_of_document(), 1);
  EXPECT_EQ(file.tokenizer_crc32(), 0xabcd1234u);
  EXPECT_EQ(file.documents(), 3);
  EXPECT_EQ(read_all(file), (std::vector<int64_t>{5, 6, 1, 7, 1, 8, 9, 10, 1}));
  EXPECT_EQ(file.document_start(1), 3);
  EXPECT_EQ(file.document_start(2), 5);
  EXPECT_EQ(file.document_start(3), 9);
}

TEST(TokenFile, ReadsThirtyTwoBitIdsAboveSixteenBits) {
  Written w{{{70000, 3}, {150000}}, 4, 2};
  w.vocab = 200000;
  const TokenFile file(write_token_file("u32.tokens", w));
  EXPECT_EQ(read_all(file), (std::vector<int64_t>{70000, 3, 2, 150000, 2}));
}

TEST(TokenFile, RefusesAFileWithoutTheMagicNamingIt) {
  Written w{{{5}}};
  w.magic = "NOTOKENS";
  const std::string path = write_token_file("magic.tokens", w);
  const std::string error = error_of([&] { TokenFile file(path); });
  EXPECT_NE(error.find(path + ": not a token file"), std::string::npos) << error;
}

TEST(TokenFile, RefusesATruncatedFileWithTheSizeItExpected) {
  Written w{{{5, 6}, {7}}};
  w.drop_bytes = 3;
  const std::string path = write_token_file("cut.tokens", w);
  const std::string error = error_of([&] { TokenFile file(path); });
  // 64 + 5 ids x 2 + 3 starts x 8 = 98 bytes expected, 95 there.
  EXPECT_NE(error.find(path + ": 95 bytes; expected 64 + 5 ids of 2 bytes + 3 document starts"),
            std::string::npos)
      << error;
}

TEST(TokenFile, RefusesDocumentStartsThatDoNotRise) {
  Written w{{{5, 6}, {7}}};
  w.starts = {0, 5, 5};
  const std::string path = write_token_file("starts.tokens", w);
  const std::string error = error_of([&] { TokenFile file(path); });
  EXPECT_NE(error.find(path + ": document start 1 is 5; expected starts rising"), std::string::npos)
      << error;
}

TEST(TokenFile, RefusesAnEndOfDocumentIdOutsideTheVocabulary) {
  Written w{{{5}}, 2, 100};
  const std::string path = write_token_file("eod.tokens", w);
  EXPECT_NE(error_of([&] { TokenFile file(path); }).find("end-of-document id 100"),
            std::string::npos);
}

TEST(TokenFile, RefusesAnIdAtOrAboveTheVocabularyWhenItIsRead) {
  const std::string path = write_token_file("big_id.tokens", {{{5, 100}}});
  const TokenFile file(path);  // the header is fine; ids are checked as they are read
  std::vector<int64_t> ids(3);
  EXPECT_EQ(error_of([&] { file.read(0, 3, ids.data()); }),
            path +
                ": token 1 is id 100; expected an id below the vocabulary size 100 the "
                "header states (a corrupt file)");
}

TEST(PackedWindows, PackDocumentsWithTheirEndIdsIntoWindowsAndCountTheTail) {
  auto file = std::make_shared<const TokenFile>(
      write_token_file("pack.tokens", {{{11, 12}, {13}, {14, 15, 16}}, 2, 1}));
  // The stream 11 12 1 13 1 14 15 16 1: two windows of 4, one id left over.
  const PackedWindows windows(file, {{0, 3}}, 4);
  ASSERT_EQ(windows.size(), 2);
  EXPECT_EQ(windows.read(0), (std::vector<int64_t>{11, 12, 1, 13}));
  EXPECT_EQ(windows.read(1), (std::vector<int64_t>{1, 14, 15, 16}));
  EXPECT_EQ(windows.unused_tail(), 1);
}

TEST(PackedWindows, SkipDocumentsThatAreNotTheirs) {
  auto file = std::make_shared<const TokenFile>(
      write_token_file("skip.tokens", {{{11, 12}, {13}, {14, 15, 16}, {17}}, 2, 1}));
  // Documents 0 and 2 only: 11 12 1 14 15 16 1 (7 ids).
  const PackedWindows windows(file, {{0, 1}, {2, 3}}, 3);
  ASSERT_EQ(windows.size(), 2);
  EXPECT_EQ(windows.read(0), (std::vector<int64_t>{11, 12, 1}));
  EXPECT_EQ(windows.read(1), (std::vector<int64_t>{14, 15, 16}));
  EXPECT_EQ(windows.documents(), 2);
  EXPECT_EQ(windows.tokens(), 7);
}

TEST(HoldOutDocuments, HoldsOutWholeDocumentsTheSameForTheSameSeed) {
  const DocumentSplit a = hold_out_documents(100, 0.1, 7), b = hold_out_documents(100, 0.1, 7);
  std::vector<int> owner(100, 0);  // 1 train, 2 test
  int64_t held = 0;
  for (const DocumentRange& r : a.train)
    for (int64_t d = r.begin; d < r.end; ++d) owner[size_t(d)] += 1;
  for (const DocumentRange& r : a.test)
    for (int64_t d = r.begin; d < r.end; ++d) owner[size_t(d)] += 2, ++held;
  EXPECT_EQ(held, 10);
  for (int o : owner) EXPECT_TRUE(o == 1 || o == 2);  // each document in exactly one part
  ASSERT_EQ(a.test.size(), b.test.size());
  for (size_t i = 0; i < a.test.size(); ++i) EXPECT_EQ(a.test[i].begin, b.test[i].begin);
  const DocumentSplit other = hold_out_documents(100, 0.1, 8);
  bool differs = other.test.size() != a.test.size();
  for (size_t i = 0; !differs && i < a.test.size(); ++i)
    differs = other.test[i].begin != a.test[i].begin;
  EXPECT_TRUE(differs);
}

TEST(TokenDataset, TrainingWindowsHoldNoHeldOutDocumentsId) {
  // Document d is eight ids equal to 2 + d, so every id names its document.
  Written w;
  w.eod = 1;
  for (uint32_t d = 0; d < 40; ++d) w.documents.push_back(std::vector<uint32_t>(8, 2 + d));
  DataConfig data;
  data.kind = DataKind::kTokens;
  data.path = write_token_file("split.tokens", w);
  data.seq_len = 9;  // one document with its end id per window
  data.test_fraction = 0.25;
  const Dataset d = load_dataset(data, 3);
  ASSERT_EQ(d.train.size(), 30);
  ASSERT_EQ(d.test.size(), 10);
  EXPECT_EQ(d.vocab_size, 100);
  std::set<int64_t> train_ids, test_ids;
  for (int64_t i = 0; i < d.train.size(); ++i)
    for (int64_t id : d.train.at(i).tokens) train_ids.insert(id);
  for (int64_t i = 0; i < d.test.size(); ++i)
    for (int64_t id : d.test.at(i).tokens) test_ids.insert(id);
  train_ids.erase(1);
  test_ids.erase(1);
  EXPECT_EQ(train_ids.size(), 30u);
  EXPECT_EQ(test_ids.size(), 10u);
  for (int64_t id : test_ids) EXPECT_EQ(train_ids.count(id), 0u) << "document " << id - 2;
  EXPECT_EQ(d.train.length(0), 9);
  EXPECT_EQ(d.train.label(0), -1);
}

}  // namespace
}  // namespace triage
