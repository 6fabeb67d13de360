// De-duplication and the held-out split.
#include "data/sequence_set.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_set>

#include "common/error.h"

namespace triage {

Deduplicated deduplicate(std::vector<SequenceRecord> records) {
  Deduplicated out;
  std::unordered_set<std::string> names, residues;
  for (auto& record : records) {
    const bool seen = names.count(record.name) || residues.count(record.residues);
    if (seen) {
      ++out.dropped;
      continue;
    }
    names.insert(record.name);
    residues.insert(record.residues);
    out.records.push_back(std::move(record));
  }
  return out;
}

namespace {
// Each label's record indices, in input order, labels ascending (so the draws below happen
// in a fixed order); unlabelled records (-1) form a group unless labelled_only.
std::map<int64_t, std::vector<size_t>> members_by_label(const std::vector<SequenceRecord>& records,
                                                        bool labelled_only) {
  std::map<int64_t, std::vector<size_t>> members;
  for (size_t i = 0; i < records.size(); ++i)
    if (!labelled_only || records[i].label >= 0) members[records[i].label].push_back(i);
  return members;
}

// Marks members at positions [from, to) of one seeded shuffle of them (one draw from gen).
void mark_shuffled(const std::vector<size_t>& members, int64_t from, int64_t to, at::Generator& gen,
                   std::vector<bool>& marked) {
  const at::Tensor order = at::randperm(int64_t(members.size()), gen);
  for (int64_t i = from; i < to; ++i) marked[members[size_t(order[i].item<int64_t>())]] = true;
}
}  // namespace

LimitedRecords limit_per_label(std::vector<SequenceRecord> records, int64_t limit, uint64_t seed) {
  LimitedRecords out;
  if (limit <= 0) {
    out.records = std::move(records);
    return out;
  }
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed ^ 0x6d61785f66616dULL);
  std::vector<bool> dropped(records.size(), false);
  for (const auto& [label, members] : members_by_label(records, /*labelled_only=*/true)) {
    const int64_t size = int64_t(members.size());
    if (size <= limit) continue;
    out.dropped += size - limit;
    mark_shuffled(members, limit, size, gen, dropped);
  }
  for (size_t i = 0; i < records.size(); ++i)
    if (!dropped[i]) out.records.push_back(std::move(records[i]));
  return out;
}

int64_t held_out_count(int64_t members, double test_fraction) {
  int64_t held = std::llround(test_fraction * double(members));
  if (test_fraction > 0 && members >= 2) held = std::clamp<int64_t>(held, 1, members - 1);
  return held;
}

Split hold_out(const std::vector<SequenceRecord>& records, double test_fraction, uint64_t seed) {
  TRIAGE_ASSERT(test_fraction >= 0 && test_fraction < 1, "test fraction " << test_fraction);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<bool> is_test(records.size(), false);
  for (const auto& [label, members] : members_by_label(records, /*labelled_only=*/false)) {
    const int64_t size = int64_t(members.size());
    mark_shuffled(members, 0, held_out_count(size, test_fraction), gen, is_test);
  }
  Split split;
  for (size_t i = 0; i < records.size(); ++i)
    (is_test[i] ? split.test : split.train).push_back(records[i]);
  return split;
}

}  // namespace triage
