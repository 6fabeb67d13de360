// Built-in tokenizer.json files and the checks that keep a run on one vocabulary.
#include "data/tokenizer_files.h"

#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "data/token_file.h"
#include "data/tokenizer.h"

namespace triage {
namespace {

using nlohmann::ordered_json;

ordered_json special_token(int64_t id, const std::string& content) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

// tokenizers' BPE model: with no merges, each character (pre-tokenized piece) is one token.
ordered_json bpe_model(const ordered_json& vocab, const ordered_json& unk_token) {
  return {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", unk_token},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          {"fuse_unk", false},
          {"byte_fallback", false},
          {"ignore_merges", false},
          {"vocab", vocab},
          {"merges", ordered_json::array()}};
}

// The byte-level alphabet (GPT-2's): printable Latin-1 bytes stand for themselves, the
// others for code points from 256 up, so that every byte is one visible character.
std::string byte_character(int byte) {
  auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  int code = byte;
  if (!printable(byte)) {
    code = 256;
    for (int b = 0; b < byte; ++b) code += printable(b) ? 0 : 1;
  }
  std::string utf8;
  if (code < 0x80) {
    utf8 += char(code);
  } else {
    utf8 += char(0xC0 | (code >> 6));
    utf8 += char(0x80 | (code & 0x3F));
  }
  return utf8;
}

std::string dumped(const ordered_json& j) { return j.dump(2) + "\n"; }

}  // namespace

std::string amino_acid_tokenizer_json() {
  const char* specials[] = {"<pad>", "<bos>", "<eos>", "<unk>"};
  ordered_json added = ordered_json::array(), vocab = ordered_json::object();
  for (int64_t id = 0; id < 4; ++id) {
    added.push_back(special_token(id, specials[id]));
    vocab[specials[id]] = id;
  }
  for (int64_t i = 0; AminoTokenizer::kResidues[i] != '\0'; ++i)
    vocab[std::string(1, AminoTokenizer::kResidues[i])] = AminoTokenizer::kUnknown + 1 + i;
  const ordered_json bos = {{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}};
  const ordered_json a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  const ordered_json b = {{"Sequence", {{"id", "B"}, {"type_id", 1}}}};
  ordered_json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", nullptr},  // BPE without merges reads one character per token
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {bos, a}},
        {"pair", {bos, a, b}},
        {"special_tokens",
         {{"<bos>", {{"id", "<bos>"}, {"ids", {AminoTokenizer::kBos}}, {"tokens", {"<bos>"}}}}}}}},
      {"decoder", {{"type", "Fuse"}}},
      {"model", bpe_model(vocab, "<unk>")}};
  return dumped(j);
}

std::string byte_tokenizer_json() {
  ordered_json vocab = ordered_json::object();
  for (int byte = 0; byte < 256; ++byte) vocab[byte_character(byte)] = byte;
  const ordered_json byte_level = {{"type", "ByteLevel"},
                                   {"add_prefix_space", false},
                                   {"trim_offsets", false},
                                   {"use_regex", false}};
  ordered_json j = {{"version", "1.0"},
                    {"truncation", nullptr},
                    {"padding", nullptr},
                    {"added_tokens", ordered_json::array()},
                    {"normalizer", nullptr},
                    {"pre_tokenizer", byte_level},
                    {"post_processor", nullptr},
                    {"decoder", byte_level},
                    {"model", bpe_model(vocab, nullptr)}};
  return dumped(j);
}

std::optional<std::string> builtin_tokenizer_json(DataKind kind) {
  switch (kind) {
    case DataKind::kSynthetic:
    case DataKind::kProteins:
      return amino_acid_tokenizer_json();
    case DataKind::kText:
      return byte_tokenizer_json();
    case DataKind::kTokens:
      return std::nullopt;
  }
  return std::nullopt;
}

std::string tokenizer_config_json(const std::string& tokenizer_json) {
  ordered_json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                         {"clean_up_tokenization_spaces", false}};
  std::vector<std::string> specials;
  try {
    for (const auto& token : nlohmann::json::parse(tokenizer_json).at("added_tokens"))
      specials.push_back(token.at("content").get<std::string>());
  } catch (const nlohmann::json::exception&) {
  }
  auto has = [&](const std::string& name) {
    return std::find(specials.begin(), specials.end(), name) != specials.end();
  };
  const std::pair<const char*, std::vector<std::string>> roles[] = {
      {"bos_token", {"<bos>", "<s>", "<|begin_of_text|>"}},
      {"eos_token", {"<eos>", "<|endoftext|>", "</s>", "<|end_of_text|>", "<|im_end|>"}},
      {"pad_token", {"<pad>", "<|padding|>"}},
      {"unk_token", {"<unk>"}}};
  for (const auto& [role, names] : roles)
    for (const std::string& name : names)
      if (has(name)) {
        config[role] = name;
        break;
      }
  return dumped(config);
}

uint32_t tokenizer_crc32(const std::string& tokenizer_json) {
  return uint32_t(::crc32(0L, reinterpret_cast<const Bytef*>(tokenizer_json.data()),
                          uInt(tokenizer_json.size())));
}

std::optional<std::string> read_file_if_present(const std::string& path) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::optional<std::string> data_tokenizer_json(const DataConfig& data) {
  if (data.kind != DataKind::kTokens) return builtin_tokenizer_json(data.kind);
  const std::string path = data.path + ".tokenizer.json";
  std::optional<std::string> json = read_file_if_present(path);
  if (!json) return std::nullopt;
  const uint32_t recorded = TokenFile(data.path).tokenizer_crc32();
  if (tokenizer_crc32(*json) != recorded)
    throw Error(path + ": CRC-32 " + std::to_string(tokenizer_crc32(*json)) + "; expected the " +
                std::to_string(recorded) + " that " + data.path +
                " records for the tokenizer that made it (tokenize again with this one)");
  return json;
}

void check_same_tokenizer(const std::string& data_json, const std::string& run_json,
                          const DataConfig& data, const std::string& run_tokenizer_path) {
  if (tokenizer_crc32(data_json) == tokenizer_crc32(run_json)) return;
  const std::string what = data.kind == DataKind::kTokens
                               ? data.path + " was tokenized by another tokenizer"
                               : "data.kind " + name_of(data.kind) + "'s vocabulary is not";
  throw Error(what + " than the model's " + run_tokenizer_path + " (CRC-32 " +
              std::to_string(tokenizer_crc32(data_json)) + " vs " +
              std::to_string(tokenizer_crc32(run_json)) +
              "), so its ids would mean other tokens; expected data tokenized with it: "
              "./launch/tokenize --tokenizer " +
              run_tokenizer_path + " --out FILE.tokens INPUT...");
}

}  // namespace triage
