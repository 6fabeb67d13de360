// The training data as token sequences with labels, and the order they are read in.
//
// load_dataset turns data.kind into examples: synthetic families, protein files (label =
// file, or data.label_pattern on the name), or a text file cut into seq_len-byte chunks.
// Every rank loads the same dataset and computes the same order, so the global batch at a
// step never depends on the number of ranks; each rank then takes its contiguous slice.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace triage {

struct Example {
  std::vector<int64_t> tokens;  // at most data.seq_len ids
  int64_t label = -1;           // -1: unlabelled
};

struct Dataset {
  std::vector<Example> train, test;
  std::vector<std::string> label_names;  // label id -> name (family, class)
  std::string source;                    // one line for the log: what was read
  int64_t duplicates = 0;                // removed before the split
  int64_t skipped_too_long = 0;          // data.too_long = skip
  int64_t cropped_too_long = 0;          // data.too_long = crop
  int64_t over_family_limit = 0;         // left out by data.max_per_family
  std::vector<std::string> warnings;     // one line each, for the run's banner
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

}  // namespace triage
