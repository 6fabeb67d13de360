// Synthetic protein families for tests and benchmarks: each family is a first-order
// Markov chain over the 20 residues with its own (sharply peaked) transition matrix, so
// sequences of one family share statistics an expert can learn and families differ.
// Deterministic: the same (seed, options) give the same sequences on every rank.
#pragma once

#include <cstdint>
#include <vector>

#include "data/sequence_io.h"

namespace triage {

struct SyntheticFamilies {
  int64_t families = 4;
  int64_t sequences = 1024;  // labelled round-robin: sequence i belongs to family i % families
  int64_t min_length = 32;   // residues, inclusive range
  int64_t max_length = 62;
  double sharpness = 3.0;  // larger: more predictable chains, more distinct families
  uint64_t seed = 1234;
};

// Records named "fam<F>_<i>", with record.label = F.
std::vector<SequenceRecord> generate_families(const SyntheticFamilies& options);

}  // namespace triage
