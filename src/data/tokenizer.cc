// Letter <-> id tables for AminoTokenizer.
#include "data/tokenizer.h"

#include <array>
#include <cstring>

namespace triage {
namespace {

constexpr int64_t kFirstResidue = 4;

std::array<int64_t, 256> build_table() {
  std::array<int64_t, 256> table;
  table.fill(AminoTokenizer::kUnknown);
  for (int64_t i = 0; AminoTokenizer::kResidues[i] != '\0'; ++i) {
    const unsigned char letter = AminoTokenizer::kResidues[i];
    table[letter] = kFirstResidue + i;
    table[letter - 'A' + 'a'] = kFirstResidue + i;
  }
  return table;
}

}  // namespace

std::vector<int64_t> AminoTokenizer::encode(const std::string& residues) const {
  static const std::array<int64_t, 256> table = build_table();
  std::vector<int64_t> ids;
  ids.reserve(residues.size() + 2);
  ids.push_back(kBos);
  for (unsigned char c : residues) ids.push_back(table[c]);
  ids.push_back(kEos);
  return ids;
}

std::string AminoTokenizer::decode(const std::vector<int64_t>& ids) const {
  const int64_t residue_count = int64_t(std::strlen(kResidues));
  std::string out;
  for (int64_t id : ids) {
    if (id == kUnknown) out += '?';
    if (id >= kFirstResidue && id < kFirstResidue + residue_count)
      out += kResidues[id - kFirstResidue];
  }
  return out;
}

}  // namespace triage
