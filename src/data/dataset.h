// The training data as token sequences with labels, and the order they are read in.
//
// load_dataset turns data.kind into examples: synthetic families, protein files (label =
// file, or data.label_pattern on the name), a text file cut into seq_len-byte chunks, or a
// token file's documents packed into seq_len-id windows. Every rank loads the same dataset
// and computes the same order, so the global batch at a step never depends on the number of
// ranks; each rank then takes its contiguous slice, and reads only that slice's windows.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "data/packed_windows.h"

namespace triage {

struct Example {
  std::vector<int64_t> tokens;  // at most data.seq_len ids
  int64_t label = -1;           // -1: unlabelled
};

// Training or held-out sequences: examples held in memory (synthetic, proteins, text), or
// windows of a memory-mapped token file, read when a rank needs one.
class Sequences {
 public:
  Sequences() = default;
  explicit Sequences(std::shared_ptr<const PackedWindows> windows);

  void push_back(Example e);  // in memory
  int64_t size() const;
  bool empty() const { return size() == 0; }
  int64_t length(int64_t i) const;  // tokens of sequence i, without reading them
  int64_t label(int64_t i) const;   // -1: unlabelled
  Example at(int64_t i) const;      // a copy (the ids read from the file)
  // The examples themselves; only for sequences held in memory.
  const std::vector<Example>& examples() const;
  const PackedWindows* windows() const { return windows_.get(); }

 private:
  std::vector<Example> examples_;
  std::shared_ptr<const PackedWindows> windows_;
};

struct Dataset {
  Sequences train, test;
  std::vector<std::string> label_names;  // label id -> name (family, class)
  std::string source;                    // one line for the log: what was read
  int64_t duplicates = 0;                // removed before the split
  int64_t skipped_too_long = 0;          // data.too_long = skip
  int64_t cropped_too_long = 0;          // data.too_long = crop
  int64_t over_family_limit = 0;         // left out by data.max_per_family
  std::vector<std::string> warnings;     // one line each, for the run's banner
  int64_t vocab_size = 0;                // every id is below it
};

// Families a run can hardly learn or measure: those with no held-out sequence (while others
// have one) and those with fewer than kFewTrainingSequences to train on. One line per kind.
constexpr int64_t kFewTrainingSequences = 8;
std::vector<std::string> small_family_warnings(const Dataset& dataset);

// Throws Error naming the file (and line) for a missing, empty or malformed input.
Dataset load_dataset(const DataConfig& data, uint64_t seed);

// An endless stream of training-example indices: epoch after epoch, each a permutation
// drawn from (seed, epoch). position -> index is a pure function, so a resumed run
// continues exactly where the interrupted one stopped.
class ExampleOrder {
 public:
  ExampleOrder(int64_t examples, uint64_t seed);
  int64_t at(int64_t position);

 private:
  int64_t examples_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> permutation_;
};

// A padded batch. Position t of a row predicts token t+1 (the LM target).
struct Batch {
  at::Tensor tokens_BL;   // int64, padded with 0
  at::Tensor real_BL;     // 1 where tokens_BL is a real token
  at::Tensor targets_BL;  // tokens shifted left by one
  at::Tensor target_BL;   // 1 where targets_BL is a real next token
  at::Tensor labels_B;    // int64, -1 for none (and for padding rows)
};

// Rows are the given examples (nullptr: an all-padding row), each padded to `length`.
Batch make_batch(const std::vector<const Example*>& rows, int64_t length);
// Rows are sequences[i] for each i, read now (-1: an all-padding row).
Batch make_batch(const Sequences& sequences, const std::vector<int64_t>& rows, int64_t length);

}  // namespace triage
