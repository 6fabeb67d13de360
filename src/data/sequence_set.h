// Preparing a labelled sequence collection for training: drop duplicates (the same
// protein can appear in several Pfam files) and hold out a deterministic test split.
#pragma once

#include <cstdint>
#include <vector>

#include "data/sequence_io.h"

namespace triage {

struct Deduplicated {
  std::vector<SequenceRecord> records;  // first occurrence kept, input order preserved
  int64_t dropped = 0;                  // later records with a name or residues seen before
};

Deduplicated deduplicate(std::vector<SequenceRecord> records);

struct Split {
  std::vector<SequenceRecord> train, test;
};

// data.max_per_family: at most `limit` records of each label (0: no limit), chosen by a
// seeded shuffle, input order kept; unlabelled records are never dropped.
struct LimitedRecords {
  std::vector<SequenceRecord> records;
  int64_t dropped = 0;  // over all labels
};
LimitedRecords limit_per_label(std::vector<SequenceRecord> records, int64_t limit, uint64_t seed);

// How many of `members` a split holds out: round(test_fraction * members), but at least one
// when members >= 2 and the fraction is not 0, and never all of them.
int64_t held_out_count(int64_t members, double test_fraction);

// Stratified by label: of each label's n records, round(test_fraction * n) chosen by a
// seeded shuffle are held out, but at least one when n >= 2 and the fraction is not 0, and
// never all of them, so every label with two or more records is in both parts. Unlabelled
// records (label -1) form one group of their own. Both parts keep the input order; the same
// (records, fraction, seed) give the same split on every rank.
Split hold_out(const std::vector<SequenceRecord>& records, double test_fraction, uint64_t seed);

}  // namespace triage
