// A pre-tokenized corpus, memory-mapped: the file ./launch/tokenize writes.
//
// Layout, little-endian: a 64-byte header
//   bytes  0-7   magic "TRIAGETK"
//          8-11  u32 format version (1)
//         12-15  u32 bytes per token id: 2 (uint16) or 4 (uint32)
//         16-23  u64 vocabulary size (every id is below it)
//         24-31  u64 end-of-document id
//         32-39  u64 tokens (end-of-document ids included)
//         40-47  u64 documents
//         48-51  u32 CRC-32 of the tokenizer.json that made the ids (0: none named)
//         52-63  zero
// then the ids, each document followed by the end-of-document id, then the documents'
// start offsets: documents + 1 u64, from 0 up to tokens.
//
// Why this and not Megatron's .bin/.idx pair: one file is copied, checksummed and named in a
// config as one thing, and of .idx we would use only the document starts (its per-sequence
// sizes and modes serve Megatron's own sample index). The start table means that neither a
// held-out split by document nor a resume ever scans the ids.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace triage {

class TokenFile {
 public:
  static constexpr char kMagic[9] = "TRIAGETK";
  static constexpr uint32_t kVersion = 1;
  static constexpr size_t kHeaderBytes = 64;

  // Maps `path` and checks its header and start table; throws Error naming the file and
  // what was expected.
  explicit TokenFile(const std::string& path);
  ~TokenFile();
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  const std::string& path() const { return path_; }
  int64_t id_bytes() const { return id_bytes_; }
  int64_t vocab_size() const { return vocab_size_; }
  int64_t end_of_document() const { return end_of_document_; }
  int64_t tokens() const { return tokens_; }
  int64_t documents() const { return documents_; }
  uint32_t tokenizer_crc32() const { return tokenizer_crc32_; }
  // Where document d starts in the id array; d == documents() gives tokens().
  int64_t document_start(int64_t d) const;

  // Ids [start, start + count) widened to int64 into `out`; an id at or above the
  // vocabulary size throws Error naming the file and the position (a corrupt file).
  void read(int64_t start, int64_t count, int64_t* out) const;

 private:
  void release();

  std::string path_;
  int fd_ = -1;
  const unsigned char* map_ = nullptr;
  size_t map_bytes_ = 0;
  int64_t id_bytes_ = 0, vocab_size_ = 0, end_of_document_ = 0, tokens_ = 0, documents_ = 0;
  uint32_t tokenizer_crc32_ = 0;
  const unsigned char* ids_ = nullptr;
  const unsigned char* starts_ = nullptr;
};

}  // namespace triage
