// What a run's token ids mean, as a Hugging Face `tokenizer.json` (read by the `tokenizers`
// package and transformers' AutoTokenizer), so that an exported model runs on real text or
// sequences where it lands, and so that a run refuses data made by another tokenizer.
//
// A run keeps its tokenizer as RUN/tokenizer.json: a token file's own (FILE.tokenizer.json,
// written by ./launch/tokenize), an imported model's, or the built-in one of its data kind.
// Two tokenizers are the same when their files' CRC-32s are: token files record that of
// the tokenizer that made them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "config/config.h"

namespace triage {

// AminoTokenizer's vocabulary (ids 0-3 <pad> <bos> <eos> <unk>, then the 20 residues in
// capitals, one per character; <bos> put before a sequence, as training saw it).
std::string amino_acid_tokenizer_json();
// data.kind text's: id = byte value, through the byte-level alphabet (any UTF-8 text).
std::string byte_tokenizer_json();

// The tokenizer of a data kind whose vocabulary Triage defines (proteins and synthetic:
// amino acids; text: bytes); nullopt for tokens, whose file names its own.
std::optional<std::string> builtin_tokenizer_json(DataKind kind);

// tokenizer_config.json for AutoTokenizer: the fast tokenizer class and its special tokens
// (those of `tokenizer_json` among <bos> <eos> <pad> <unk> and the usual end-of-text names).
std::string tokenizer_config_json(const std::string& tokenizer_json);

uint32_t tokenizer_crc32(const std::string& tokenizer_json);

// A file's bytes, or nullopt when it does not exist; Error naming it when it cannot be read.
std::optional<std::string> read_file_if_present(const std::string& path);

// The tokenizer that made the data: a token file's FILE.tokenizer.json (checked against the
// CRC-32 its header records; Error naming both when they differ), or the kind's built-in
// one. nullopt: a token file without its tokenizer beside it.
std::optional<std::string> data_tokenizer_json(const DataConfig& data);

// Data and the run's model must use one vocabulary: Error naming the data, the run's
// tokenizer and how to tokenize with it when the CRC-32s differ.
void check_same_tokenizer(const std::string& data_json, const std::string& run_json,
                          const DataConfig& data, const std::string& run_tokenizer_path);

}  // namespace triage
