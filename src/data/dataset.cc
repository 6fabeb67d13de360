// Dataset construction: reading, labelling, length policy, de-duplication, held-out split.
#include "data/dataset.h"

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <sstream>

#include "common/error.h"
#include "data/sequence_io.h"
#include "data/sequence_set.h"
#include "data/synthetic_families.h"
#include "data/token_file.h"
#include "data/tokenizer.h"

namespace triage {

namespace {

std::vector<std::string> split_paths(const std::string& paths) {
  std::vector<std::string> out;
  std::stringstream stream(paths);
  for (std::string path; std::getline(stream, path, ',');)
    if (!path.empty()) out.push_back(path);
  return out;
}

// A family's name when a file is a family: its Stockholm "#=GF ID", else the file name
// without extensions and trailing digits ("dir/globins630.fa.gz" -> "globins": a count in
// a file name is not part of the family).
std::string family_name(const std::string& path) {
  const std::string id = stockholm_family_id(path);
  if (!id.empty()) return id;
  std::string name = std::filesystem::path(path).filename().string();
  name = name.substr(0, name.find('.'));
  const size_t digits = name.find_last_not_of("0123456789");
  return digits == std::string::npos ? name : name.substr(0, digits + 1);
}

// Labels every record by the first capture group of `pattern` in its name; label ids in
// order of the sorted label names, so they do not depend on the file order.
void label_by_pattern(std::vector<SequenceRecord>& records, const std::string& pattern,
                      const std::string& files, Dataset& dataset) {
  const std::regex re(pattern);
  std::map<std::string, int64_t> ids;
  std::vector<std::string> names(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    std::smatch match;
    if (!std::regex_search(records[i].name, match, re) || match.size() < 2 || !match[1].matched)
      throw Error(files + ": sequence " + records[i].name + " (line " +
                  std::to_string(records[i].line) + ") does not match data.label_pattern " +
                  pattern);
    names[i] = match[1].str();
    ids[names[i]] = 0;
  }
  for (auto& [name, id] : ids) {
    id = int64_t(dataset.label_names.size());
    dataset.label_names.push_back(name);
  }
  for (size_t i = 0; i < records.size(); ++i) records[i].label = ids[names[i]];
}

std::vector<SequenceRecord> read_protein_files(const DataConfig& data, Dataset& dataset) {
  const std::vector<std::string> paths = split_paths(data.path);
  if (paths.empty()) throw Error("data.path: expected one or more comma-separated files");
  // Each sequence becomes BOS + residues + EOS; longer than seq_len is an error unless
  // the policy allows skipping or cropping.
  const int64_t max_residues = data.too_long == TooLong::kError ? data.seq_len - 2 : 0;
  std::vector<SequenceRecord> all;
  std::map<std::string, int64_t> family_ids;  // files of one family share its label
  for (size_t f = 0; f < paths.size(); ++f) {
    std::vector<SequenceRecord> records = read_sequences(paths[f], max_residues);
    if (data.label_pattern.empty()) {
      const auto [it, fresh] =
          family_ids.emplace(family_name(paths[f]), int64_t(dataset.label_names.size()));
      if (fresh) dataset.label_names.push_back(it->first);
      for (auto& r : records) r.label = it->second;
    }
    all.insert(all.end(), std::make_move_iterator(records.begin()),
               std::make_move_iterator(records.end()));
  }
  if (!data.label_pattern.empty()) label_by_pattern(all, data.label_pattern, data.path, dataset);
  dataset.source =
      std::to_string(all.size()) + " sequences from " + std::to_string(paths.size()) + " file(s)";
  return all;
}

std::vector<SequenceRecord> synthetic_records(const DataConfig& data, uint64_t seed,
                                              Dataset& dataset) {
  SyntheticFamilies options;
  options.families = data.num_families;
  options.sequences = data.num_sequences;
  options.max_length = std::max<int64_t>(1, data.seq_len - 2);
  options.min_length = std::max<int64_t>(1, options.max_length / 2);
  options.seed = seed;
  for (int64_t f = 0; f < data.num_families; ++f)
    dataset.label_names.push_back("fam" + std::to_string(f));
  dataset.source = std::to_string(data.num_sequences) + " synthetic sequences in " +
                   std::to_string(data.num_families) + " families";
  return generate_families(options);
}

// Text: consecutive seq_len-byte chunks of the file, one token per byte; a shorter tail
// is dropped. Chunks are held out like sequences.
Dataset load_text(const DataConfig& data, uint64_t seed) {
  std::ifstream in(data.path, std::ios::binary);
  if (!in) throw Error(data.path + ": cannot open the text file");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (int64_t(bytes.size()) < data.seq_len)
    throw Error(data.path + ": " + std::to_string(bytes.size()) +
                " bytes; expected at least data.seq_len (" + std::to_string(data.seq_len) + ")");
  std::vector<SequenceRecord> chunks;
  for (size_t start = 0; start + size_t(data.seq_len) <= bytes.size();
       start += size_t(data.seq_len))
    chunks.push_back(
        {"chunk" + std::to_string(chunks.size()), bytes.substr(start, data.seq_len), 0, -1});
  Dataset dataset;
  dataset.vocab_size = kByteVocabSize;
  dataset.source = std::to_string(bytes.size()) + " bytes of text in " +
                   std::to_string(chunks.size()) + " chunks";
  Split split = hold_out(chunks, data.test_fraction, seed);
  auto tokens_of = [](const SequenceRecord& r) {
    Example e;
    for (unsigned char c : r.residues) e.tokens.push_back(int64_t(c));
    return e;
  };
  for (const auto& r : split.train) dataset.train.push_back(tokens_of(r));
  for (const auto& r : split.test) dataset.test.push_back(tokens_of(r));
  return dataset;
}

// Tokens: the file's documents, held out by document, each part packed into windows.
Dataset load_tokens(const DataConfig& data, uint64_t seed) {
  auto file = std::make_shared<const TokenFile>(data.path);
  const DocumentSplit split = hold_out_documents(file->documents(), data.test_fraction, seed);
  auto train = std::make_shared<const PackedWindows>(file, split.train, data.seq_len);
  auto test = std::make_shared<const PackedWindows>(file, split.test, data.seq_len);
  if (train->size() == 0)
    throw Error(data.path + ": " + std::to_string(train->tokens()) +
                " training tokens; expected at least data.seq_len (" +
                std::to_string(data.seq_len) + ") after holding out data.test_fraction");
  Dataset dataset;
  dataset.vocab_size = file->vocab_size();
  dataset.source =
      std::to_string(file->tokens()) + " tokens in " + std::to_string(file->documents()) +
      " documents (" + std::to_string(8 * file->id_bytes()) + "-bit ids, vocabulary " +
      std::to_string(file->vocab_size()) + ", end of document " +
      std::to_string(file->end_of_document()) + "); " + std::to_string(test->documents()) +
      " documents held out; packed into " + std::to_string(data.seq_len) + "-id windows, " +
      std::to_string(train->unused_tail() + test->unused_tail()) + " tail ids unused";
  dataset.train = Sequences(std::move(train));
  dataset.test = Sequences(std::move(test));
  return dataset;
}

}  // namespace

Sequences::Sequences(std::shared_ptr<const PackedWindows> windows) : windows_(std::move(windows)) {}

void Sequences::push_back(Example e) {
  TRIAGE_ASSERT(!windows_, "adding an example to a token file's windows");
  examples_.push_back(std::move(e));
}

int64_t Sequences::size() const { return windows_ ? windows_->size() : int64_t(examples_.size()); }

int64_t Sequences::length(int64_t i) const {
  return windows_ ? windows_->length() : int64_t(examples_.at(size_t(i)).tokens.size());
}

int64_t Sequences::label(int64_t i) const { return windows_ ? -1 : examples_.at(size_t(i)).label; }

Example Sequences::at(int64_t i) const {
  return windows_ ? Example{windows_->read(i), -1} : examples_.at(size_t(i));
}

const std::vector<Example>& Sequences::examples() const {
  TRIAGE_ASSERT(!windows_, "a token file's windows are read one at a time");
  return examples_;
}

std::vector<std::string> small_family_warnings(const Dataset& dataset) {
  const size_t labels = dataset.label_names.size();
  std::vector<int64_t> train(labels, 0), test(labels, 0);
  for (int64_t i = 0; i < dataset.train.size(); ++i)
    if (const int64_t l = dataset.train.label(i); l >= 0 && size_t(l) < labels) ++train[size_t(l)];
  for (int64_t i = 0; i < dataset.test.size(); ++i)
    if (const int64_t l = dataset.test.label(i); l >= 0 && size_t(l) < labels) ++test[size_t(l)];
  auto listing = [&](auto&& selected) {
    std::string names;
    int64_t count = 0;
    for (size_t l = 0; l < labels; ++l) {
      if (!selected(l)) continue;
      if (++count <= 8)
        names += (names.empty() ? "" : ", ") + dataset.label_names[l] + " (" +
                 std::to_string(train[l]) + " train, " + std::to_string(test[l]) + " held out)";
    }
    if (count > 8) names += " and " + std::to_string(count - 8) + " more";
    return names;
  };
  std::vector<std::string> warnings;
  if (!dataset.test.empty()) {
    const std::string unmeasured = listing([&](size_t l) { return test[l] == 0; });
    if (!unmeasured.empty())
      warnings.push_back(
          "families with no held-out sequence (held-out figures do not cover "
          "them): " +
          unmeasured);
  }
  const std::string few = listing([&](size_t l) { return train[l] < kFewTrainingSequences; });
  if (!few.empty())
    warnings.push_back("families with fewer than " + std::to_string(kFewTrainingSequences) +
                       " training sequences (too few for an expert to learn them, and easy to "
                       "overfit): " +
                       few);
  return warnings;
}

Dataset load_dataset(const DataConfig& data, uint64_t seed) {
  if (data.kind == DataKind::kText) return load_text(data, seed);
  if (data.kind == DataKind::kTokens) return load_tokens(data, seed);
  Dataset dataset;
  dataset.vocab_size = kAminoAcidVocabSize;
  std::vector<SequenceRecord> records = data.kind == DataKind::kSynthetic
                                            ? synthetic_records(data, seed, dataset)
                                            : read_protein_files(data, dataset);
  Deduplicated unique = deduplicate(std::move(records));
  dataset.duplicates = unique.dropped;
  LimitedRecords limited = limit_per_label(std::move(unique.records), data.max_per_family, seed);
  unique.records = std::move(limited.records);
  dataset.over_family_limit = limited.dropped;
  Split split = hold_out(unique.records, data.test_fraction, seed);
  const AminoTokenizer tokenizer;
  auto to_examples = [&](const std::vector<SequenceRecord>& records, Sequences& out) {
    for (const auto& r : records) {
      Example e{tokenizer.encode(r.residues), r.label};
      if (int64_t(e.tokens.size()) > data.seq_len) {
        if (data.too_long == TooLong::kSkip) {
          ++dataset.skipped_too_long;
          continue;
        }
        e.tokens.resize(data.seq_len);  // crop: keep the start (BOS onwards)
        ++dataset.cropped_too_long;
      }
      out.push_back(std::move(e));
    }
  };
  to_examples(split.train, dataset.train);
  to_examples(split.test, dataset.test);
  dataset.warnings = small_family_warnings(dataset);
  if (dataset.train.empty())
    throw Error(data.path.empty() ? "data: no training sequences"
                                  : data.path + ": no training sequences left");
  return dataset;
}

ExampleOrder::ExampleOrder(int64_t examples, uint64_t seed) : examples_(examples), seed_(seed) {
  TRIAGE_ASSERT(examples > 0, "an order over no examples");
}

int64_t ExampleOrder::at(int64_t position) {
  const int64_t epoch = position / examples_;
  if (epoch != epoch_) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed_ + 0x9E3779B97F4A7C15ull *
                                                                             uint64_t(epoch + 1));
    at::Tensor order = at::randperm(examples_, gen);
    permutation_.assign(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + examples_);
    epoch_ = epoch;
  }
  return permutation_[position % examples_];
}

Batch make_batch(const std::vector<const Example*>& rows, int64_t length) {
  const int64_t batch = int64_t(rows.size());
  Batch b;
  b.tokens_BL = at::zeros({batch, length}, at::kLong);
  b.real_BL = at::zeros({batch, length}, at::kLong);
  b.labels_B = at::full({batch}, -1, at::kLong);
  auto tokens = b.tokens_BL.accessor<int64_t, 2>();
  auto real = b.real_BL.accessor<int64_t, 2>();
  auto labels = b.labels_B.accessor<int64_t, 1>();
  for (int64_t i = 0; i < batch; ++i) {
    if (!rows[i]) continue;
    TRIAGE_ASSERT(int64_t(rows[i]->tokens.size()) <= length, "example longer than the batch");
    for (size_t t = 0; t < rows[i]->tokens.size(); ++t) {
      tokens[i][t] = rows[i]->tokens[t];
      real[i][t] = 1;
    }
    labels[i] = rows[i]->label;
  }
  b.targets_BL = at::zeros_like(b.tokens_BL);
  b.target_BL = at::zeros_like(b.real_BL);
  if (length > 1) {
    b.targets_BL.narrow(1, 0, length - 1).copy_(b.tokens_BL.narrow(1, 1, length - 1));
    b.target_BL.narrow(1, 0, length - 1).copy_(b.real_BL.narrow(1, 1, length - 1));
  }
  return b;
}

Batch make_batch(const Sequences& sequences, const std::vector<int64_t>& rows, int64_t length) {
  std::vector<Example> read;
  read.reserve(rows.size());
  for (int64_t i : rows)
    if (i >= 0) read.push_back(sequences.at(i));
  std::vector<const Example*> pointers;
  size_t next = 0;
  for (int64_t i : rows) pointers.push_back(i >= 0 ? &read[next++] : nullptr);
  return make_batch(pointers, length);
}

}  // namespace triage
