// De-duplication and the held-out split.
#include "data/sequence_set.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
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

Split hold_out(const std::vector<SequenceRecord>& records, double test_fraction, uint64_t seed) {
  TRIAGE_ASSERT(test_fraction >= 0 && test_fraction < 1, "test fraction " << test_fraction);
  const int64_t n = int64_t(records.size());
  const int64_t held = std::llround(test_fraction * double(n));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor order = at::randperm(n, gen);
  std::vector<bool> is_test(n, false);
  for (int64_t i = 0; i < held; ++i) is_test[order[i].item<int64_t>()] = true;
  Split split;
  for (int64_t i = 0; i < n; ++i) (is_test[i] ? split.test : split.train).push_back(records[i]);
  return split;
}

}  // namespace triage
