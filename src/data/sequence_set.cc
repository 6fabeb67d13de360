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

std::vector<SequenceRecord> limit_per_label(std::vector<SequenceRecord> records, int64_t limit,
                                            uint64_t seed,
                                            std::vector<int64_t>& dropped_per_label) {
  if (limit <= 0) return records;
  std::map<int64_t, std::vector<size_t>> members;  // label -> record indices, input order
  for (size_t i = 0; i < records.size(); ++i)
    if (records[i].label >= 0) members[records[i].label].push_back(i);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed ^ 0x6d61785f66616dULL);
  std::vector<bool> dropped(records.size(), false);
  for (const auto& [label, indices] : members) {
    const int64_t size = int64_t(indices.size());
    if (size <= limit) continue;
    if (dropped_per_label.size() <= size_t(label)) dropped_per_label.resize(size_t(label) + 1, 0);
    dropped_per_label[size_t(label)] += size - limit;
    const at::Tensor order = at::randperm(size, gen);
    for (int64_t i = limit; i < size; ++i)
      dropped[indices[size_t(order[i].item<int64_t>())]] = true;
  }
  std::vector<SequenceRecord> kept;
  for (size_t i = 0; i < records.size(); ++i)
    if (!dropped[i]) kept.push_back(std::move(records[i]));
  return kept;
}

Split hold_out(const std::vector<SequenceRecord>& records, double test_fraction, uint64_t seed) {
  TRIAGE_ASSERT(test_fraction >= 0 && test_fraction < 1, "test fraction " << test_fraction);
  const int64_t n = int64_t(records.size());
  std::map<int64_t, std::vector<int64_t>> members;  // label -> record indices, input order
  for (int64_t i = 0; i < n; ++i) members[records[size_t(i)].label].push_back(i);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<bool> is_test(n, false);
  for (const auto& [label, indices] : members) {
    const int64_t size = int64_t(indices.size());
    int64_t held = std::llround(test_fraction * double(size));
    if (test_fraction > 0 && size >= 2) held = std::clamp<int64_t>(held, 1, size - 1);
    const at::Tensor order = at::randperm(size, gen);
    for (int64_t i = 0; i < held; ++i) is_test[indices[order[i].item<int64_t>()]] = true;
  }
  Split split;
  for (int64_t i = 0; i < n; ++i) (is_test[i] ? split.test : split.train).push_back(records[i]);
  return split;
}

}  // namespace triage
