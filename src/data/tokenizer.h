// Amino-acid tokenizer. Ids: 0 PAD, 1 BOS, 2 EOS, 3 UNK (X, B, Z, J, U, O and any other
// letter), then the 20 standard residues in the order of kResidues. 24 ids in all.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace triage {

class AminoTokenizer {
 public:
  static constexpr int64_t kPad = 0, kBos = 1, kEos = 2, kUnknown = 3;
  static constexpr const char* kResidues = "ACDEFGHIKLMNPQRSTVWY";
  static constexpr int64_t kVocabSize = kAminoAcidVocabSize;

  // BOS, one id per residue, EOS.
  std::vector<int64_t> encode(const std::string& residues) const;
  // Residue letters for residue ids; '?' for UNK; specials are skipped.
  std::string decode(const std::vector<int64_t>& ids) const;
};

}  // namespace triage
