// Reading protein sequences: FASTA and Stockholm alignments, plain or gzip-compressed
// (zlib reads both). Alignment gaps ('-' and '.') are stripped and insert-state lowercase
// is uppercased, so every sequence is its raw residues. Mistakes are reported as
// "FILE:LINE: what was found, what was expected".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace triage {

struct SequenceRecord {
  std::string name;      // FASTA: first word of the header; Stockholm: NAME/start-end
  std::string residues;  // uppercase letters only
  int64_t line = 0;      // where the record starts, for messages
  int64_t label = -1;    // family / class id, set by whoever knows it (-1: none)
};

// max_residues > 0 refuses any longer sequence with a message naming file and line.
std::vector<SequenceRecord> read_fasta(const std::string& path, int64_t max_residues = 0);
std::vector<SequenceRecord> read_stockholm(const std::string& path, int64_t max_residues = 0);

// A Stockholm file's family name, its "#=GF ID" line; "" for FASTA or when there is none.
std::string stockholm_family_id(const std::string& path);

// Picks the reader from the content: "# STOCKHOLM" on the first line, else FASTA.
std::vector<SequenceRecord> read_sequences(const std::string& path, int64_t max_residues = 0);

}  // namespace triage
