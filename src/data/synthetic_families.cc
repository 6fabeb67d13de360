// Markov-chain family generator; see the header.
#include "data/synthetic_families.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "common/error.h"
#include "data/tokenizer.h"

namespace triage {

std::vector<SequenceRecord> generate_families(const SyntheticFamilies& o) {
  TRIAGE_ASSERT(o.families >= 1 && o.min_length >= 1 && o.min_length <= o.max_length,
                "bad synthetic family options");
  constexpr int64_t kAlphabet = 20;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  auto options = at::TensorOptions().dtype(at::kDouble);
  // Per family: a start distribution and a row-stochastic transition matrix.
  at::Tensor start_FA = at::softmax(at::randn({o.families, kAlphabet}, gen, options), -1);
  at::Tensor transition_FAA =
      at::softmax(o.sharpness * at::randn({o.families, kAlphabet, kAlphabet}, gen, options), -1);

  std::vector<SequenceRecord> records;
  records.reserve(o.sequences);
  for (int64_t i = 0; i < o.sequences; ++i) {
    const int64_t family = i % o.families;
    const int64_t length =
        o.min_length + at::randint(o.max_length - o.min_length + 1, {1}, gen).item<int64_t>();
    SequenceRecord record;
    record.name = "fam" + std::to_string(family) + "_" + std::to_string(i);
    record.label = family;
    int64_t state = at::multinomial(start_FA[family], 1, false, gen).item<int64_t>();
    for (int64_t t = 0; t < length; ++t) {
      record.residues += AminoTokenizer::kResidues[state];
      state = at::multinomial(transition_FAA[family][state], 1, false, gen).item<int64_t>();
    }
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace triage
