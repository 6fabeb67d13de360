// A token file's documents as training sequences: held out by document, then packed.
//
// Documents follow one another with their end-of-document ids and are cut into windows of
// data.seq_len ids, so no id is padding; a window may span documents. As in Megatron's
// default, attention is not reset at a document's end: the end-of-document id is what the
// model learns to read as one. The ids after the last whole window are unused (counted).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "data/token_file.h"

namespace triage {

struct DocumentRange {
  int64_t begin = 0, end = 0;  // documents [begin, end)
};

struct DocumentSplit {
  std::vector<DocumentRange> train, test;  // ascending, disjoint, together all documents
};

// held_out_count(documents, test_fraction) documents held out, chosen by a seeded shuffle;
// the same on every rank.
DocumentSplit hold_out_documents(int64_t documents, double test_fraction, uint64_t seed);

class PackedWindows {
 public:
  PackedWindows(std::shared_ptr<const TokenFile> file, const std::vector<DocumentRange>& documents,
                int64_t length);

  int64_t size() const { return windows_; }
  int64_t length() const { return length_; }
  int64_t documents() const { return documents_; }
  int64_t tokens() const { return stream_; }  // ids of its documents, end ids included
  int64_t unused_tail() const { return stream_ - windows_ * length_; }
  const TokenFile& file() const { return *file_; }

  // Window w's ids: only the pages that hold them are read.
  std::vector<int64_t> read(int64_t window) const;

 private:
  std::shared_ptr<const TokenFile> file_;
  int64_t length_ = 0, windows_ = 0, stream_ = 0, documents_ = 0;
  // Runs of consecutive documents: where run r starts in the file, and in the packed stream.
  std::vector<int64_t> run_file_start_, run_stream_start_;
};

}  // namespace triage
