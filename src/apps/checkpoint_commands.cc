// `triage export`: a checkpoint (any EP layout) in Hugging Face transformers' layout.
// `triage import`: such a model (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE) as a run folder to
// train on from. Both carry the tokenizer (tokenizer.json) that says what the ids mean.
// `triage logits`: the checkpoint's own next-token logits on seeded random sequences, the
// reference an exported model is compared with (tests/e2e/hf_export_check.py).
// All run in one process with every expert local; none needs mpirun.
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>
#include <torch/optim/adamw.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "apps/commands.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/hf_export.h"
#include "checkpoint/hf_import.h"
#include "checkpoint/safetensors.h"
#include "common/error.h"
#include "data/tokenizer_files.h"
#include "model/transformer.h"
#include "parallel/mpi_environment.h"
#include "parallel/process_groups.h"
#include "train/run_folder.h"

namespace triage {

namespace {

struct ExportArgs {
  std::string checkpoint, format = "hf", out, dtype = "checkpoint";
  bool drop_class_head = false;
  double max_shard_mb = 5000;  // the Hub's usual shard size
};

struct ImportArgs {
  std::string source, format = "hf", out;
};

void write_text(const std::string& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary);
  file << text;
  if (!file) throw Error(path + ": cannot write");
}

// The imported model's config, for `triage train OUT/config.yaml --out OUT --resume`: every
// key, by section, as `triage config` prints them. Its data section names the kind the
// model's tokenizer reads and leaves data.path empty, so training refuses to start until
// the user names data in that vocabulary.
void write_config_yaml(const Config& config, const std::string& path,
                       const std::string& data_hint) {
  std::ofstream file(path);
  file << "# Written by triage import: the model and moe sections describe the imported model;\n"
       << "# set data.path (and train) for your run: " << data_hint << "\n";
  std::string section;
  for (const ConfigRow& row : config_rows(config)) {
    const std::string row_section = row.key.substr(0, row.key.find('.'));
    if (row_section != section) file << row_section << ":\n";
    section = row_section;
    file << "  " << row.key.substr(row.key.find('.') + 1) << ": " << row.value << "\n";
  }
  if (!file) throw Error(path + ": cannot write");
}

struct LogitsArgs {
  std::string checkpoint, out;
  int64_t sequences = 4, length = 32;
  uint64_t seed = 1;
};

// The positional CHECKPOINT of export and logits.
void add_checkpoint_argument(CLI::App& sub, std::string& checkpoint) {
  sub.add_option("checkpoint", checkpoint,
                 "A run's checkpoints folder (its latest is read) or one step folder")
      ->required()
      ->check(CLI::ExistingDirectory);
}

}  // namespace

Command add_export_command(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* sub = app.add_subcommand(
      "export",
      "Write a checkpoint as a Hugging Face transformers model (config.json + safetensors)");
  add_checkpoint_argument(*sub, args->checkpoint);
  sub->add_option("--format", args->format, "Output format")->check(CLI::IsMember({"hf"}));
  sub->add_option("--out", args->out, "Folder to write the model into")->required();
  sub->add_flag("--drop-class-head", args->drop_class_head,
                "Export the language model of a model that also has a classification head");
  sub->add_option("--max-shard-mb", args->max_shard_mb,
                  "Split model.safetensors into shards of at most this size (with an index)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--dtype", args->dtype,
                  "Store the weights as the checkpoint holds them, or as float32, float64 or "
                  "bf16 (rounded to nearest even; what published checkpoints use)")
      ->check(CLI::IsMember({"checkpoint", "float32", "float64", "bf16"}))
      ->capture_default_str();
  return {sub, [args] {
            const CheckpointContents checkpoint = read_checkpoint(args->checkpoint);
            HfModel model = to_hf_model(checkpoint, args->drop_class_head);
            if (args->dtype != "checkpoint")
              cast_hf_model(model, args->dtype == "bf16"      ? at::kBFloat16
                                   : args->dtype == "float64" ? at::kDouble
                                                              : at::kFloat);
            // The tokenizer: the run's own (a token file's, an imported model's), else the
            // built-in one of the data kind it trained on.
            const std::filesystem::path run =
                std::filesystem::path(checkpoint.folder).parent_path().parent_path();
            std::optional<std::string> tokenizer =
                read_file_if_present((run / "tokenizer.json").string());
            if (!tokenizer) tokenizer = builtin_tokenizer_json(checkpoint.config.data.kind);
            if (tokenizer)
              model.notes.push_back(
                  "tokenizer.json and tokenizer_config.json written (AutoTokenizer reads them)");
            else
              model.notes.push_back("no tokenizer: " + (run / "tokenizer.json").string() +
                                    " is missing (the run's token file had none beside it)");
            write_hf_model(model, args->out, uint64_t(args->max_shard_mb * 1e6));
            if (tokenizer) {
              write_text(args->out + "/tokenizer.json", *tokenizer);
              write_text(args->out + "/tokenizer_config.json", tokenizer_config_json(*tokenizer));
            }
            std::cout << "exported " << checkpoint.folder << " (step " << checkpoint.manifest.step
                      << ", " << checkpoint.config.moe.num_experts << " experts from "
                      << checkpoint.experts.size() << " expert files) as " << model.architecture
                      << " (" << model.config.value("dtype", "") << ") to " << args->out << "\n";
            for (const std::string& note : model.notes) std::cout << "  note: " << note << "\n";
            return 0;
          }};
}

Command add_import_command(CLI::App& app) {
  auto args = std::make_shared<ImportArgs>();
  CLI::App* sub = app.add_subcommand(
      "import",
      "Make a run folder from a Hugging Face Mixtral or Qwen2-MoE model, to train on from");
  sub->add_option("model", args->source,
                  "Folder with config.json and model.safetensors (or shards)")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->add_option("--format", args->format, "Input format")->check(CLI::IsMember({"hf"}));
  sub->add_option("--out", args->out, "Run folder to create: checkpoints/ and config.yaml")
      ->required();
  return {sub, [args] {
            MpiEnvironment mpi(nullptr, nullptr);
            if (mpi.world_size() != 1)
              throw Error("triage import runs as one process, not under mpirun");
            ImportedModel imported = read_hf_model(args->source);
            Config& config = imported.config;
            refuse_to_clobber(args->out, /*resume=*/false, /*overwrite=*/false);
            ProcessGroups groups = make_process_groups(config);
            const at::ScalarType dtype =
                config.train.dtype == DType::kFloat64 ? at::kDouble : at::kFloat;
            Transformer model(config, dtype, groups.ep.get(), groups.world.get());
            const ParameterList parameters = model.parameters();
            std::vector<at::Tensor> tensors;
            {
              c10::NoGradGuard no_grad;
              for (const NamedParameter& p : parameters) {
                auto it = imported.parameters.find(p.name);
                TRIAGE_ASSERT(it != imported.parameters.end(), "no imported tensor for " << p.name);
                if (it->second.sizes() != p.tensor.sizes()) {
                  std::ostringstream text;
                  text << args->source << ": " << p.name << " has shape " << it->second.sizes()
                       << " where the model needs " << p.tensor.sizes();
                  throw Error(text.str());
                }
                p.tensor.copy_(it->second);
                tensors.push_back(p.tensor);
              }
            }
            // A fresh optimizer: step 0, zero moments, as a run's first checkpoint would hold.
            torch::optim::AdamW optimizer(tensors, torch::optim::AdamWOptions(config.train.lr));
            TrainingState state{parameters, &optimizer, model.moe_layers(), 0, 0};
            const std::string run_id = open_run_id(args->out, /*resume=*/false);
            const std::string folder =
                save_checkpoint(args->out + "/checkpoints", config, groups, state, 1, run_id);
            // The tokenizer comes along; the data kind follows from it.
            const std::optional<std::string> tokenizer =
                read_file_if_present(args->source + "/tokenizer.json");
            const std::string kept = args->out + "/tokenizer.json";
            std::string hint =
                "the model came without a tokenizer.json, so nothing checks the vocabulary";
            config.data.kind = DataKind::kTokens;
            if (tokenizer) {
              write_text(kept, *tokenizer);
              const uint32_t crc = tokenizer_crc32(*tokenizer);
              if (crc == tokenizer_crc32(amino_acid_tokenizer_json()))
                config.data.kind = DataKind::kProteins;
              else if (crc == tokenizer_crc32(byte_tokenizer_json()))
                config.data.kind = DataKind::kText;
              hint = config.data.kind == DataKind::kTokens
                         ? "a token file made with its tokenizer (./launch/tokenize --tokenizer " +
                               kept + " --out FILE.tokens INPUT...)"
                         : "files of data.kind " + name_of(config.data.kind) +
                               " (its tokenizer.json is Triage's built-in one)";
              imported.notes.push_back("tokenizer.json kept as " + kept +
                                       "; training refuses data made by another tokenizer");
            }
            config.data.path = "";
            write_config_yaml(config, args->out + "/config.yaml", hint);
            std::cout << "imported " << args->source << " (" << config.moe.num_experts
                      << " experts, " << config.model.n_layers << " layers, " << config.train.dtype
                      << ") as " << folder << "\ntrain on from it: triage train " << args->out
                      << "/config.yaml --out " << args->out
                      << " --resume (after setting data.path in its config.yaml)\n";
            for (const std::string& note : imported.notes) std::cout << "  note: " << note << "\n";
            return 0;
          }};
}

Command add_logits_command(CLI::App& app) {
  auto args = std::make_shared<LogitsArgs>();
  CLI::App* sub = app.add_subcommand(
      "logits", "A checkpoint's next-token logits on seeded random sequences (safetensors)");
  add_checkpoint_argument(*sub, args->checkpoint);
  sub->add_option("--sequences", args->sequences, "How many sequences")->check(CLI::PositiveNumber);
  sub->add_option("--length", args->length, "Tokens per sequence (at most model.max_seq_len)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--seed", args->seed, "Seed of the random tokens");
  sub->add_option("--out", args->out, "Safetensors file: tokens [N, L] and logits [N, L, V]")
      ->required();
  return {sub, [args] {
            const CheckpointContents checkpoint = read_checkpoint(args->checkpoint);
            Config config = checkpoint.config;
            if (config.train.loss == Loss::kClassify)
              throw Error(checkpoint.folder +
                          ": the model has no language-model head (train.loss: classify)");
            if (args->length > config.model.max_seq_len)
              throw Error("--length " + std::to_string(args->length) +
                          ": expected at most model.max_seq_len (" +
                          std::to_string(config.model.max_seq_len) + ")");
            // The model, not a serving choice: every assignment computed, as transformers does.
            config.moe.eval_capacity_factor = 0.0;
            const at::ScalarType dtype =
                config.train.dtype == DType::kFloat64 ? at::kDouble : at::kFloat;
            Transformer model(config, dtype, nullptr, nullptr);
            load_weights(checkpoint, model.parameters(), model.moe_layers());
            at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(args->seed);
            const at::Tensor tokens =
                at::randint(config.model.vocab_size, {args->sequences, args->length}, gen,
                            at::TensorOptions().dtype(at::kLong));
            c10::NoGradGuard no_grad;
            const ModelOutput out =
                model.forward(tokens, at::ones_like(tokens), /*training=*/false);
            write_safetensors(args->out, {{"tokens", tokens}, {"logits", out.lm_logits_BLV}});
            std::cout << "logits of " << args->sequences << " x " << args->length << " tokens from "
                      << checkpoint.folder << " to " << args->out << "\n";
            return 0;
          }};
}

}  // namespace triage
