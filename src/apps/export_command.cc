// `triage export`: a checkpoint (any EP layout) in Hugging Face transformers' layout.
// `triage logits`: the checkpoint's own next-token logits on seeded random sequences, the
// reference an exported model is compared with (tests/e2e/hf_export_check.py).
// Both run in one process with every expert local; neither needs mpirun.
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/hf_format.h"
#include "checkpoint/safetensors.h"
#include "common/error.h"
#include "model/transformer.h"

namespace triage {

namespace {

struct ExportArgs {
  std::string checkpoint, format = "hf", out;
  bool drop_class_head = false;
  double max_shard_mb = 5000;  // the Hub's usual shard size
};

struct LogitsArgs {
  std::string checkpoint, out;
  int64_t sequences = 4, length = 32;
  uint64_t seed = 1;
};

}  // namespace

Command add_export_command(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* sub = app.add_subcommand(
      "export",
      "Write a checkpoint as a Hugging Face transformers model (config.json + safetensors)");
  sub->add_option("checkpoint", args->checkpoint,
                  "A run's checkpoints folder (its latest is read) or one step folder")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->add_option("--format", args->format, "Output format")->check(CLI::IsMember({"hf"}));
  sub->add_option("--out", args->out, "Folder to write the model into")->required();
  sub->add_flag("--drop-class-head", args->drop_class_head,
                "Export the language model of a model that also has a classification head");
  sub->add_option("--max-shard-mb", args->max_shard_mb,
                  "Split model.safetensors into shards of at most this size (with an index)")
      ->check(CLI::PositiveNumber);
  return {sub, [args] {
            const CheckpointContents checkpoint = read_checkpoint(args->checkpoint);
            const HfModel model = to_hf_model(checkpoint, args->drop_class_head);
            write_hf_model(model, args->out, uint64_t(args->max_shard_mb * 1e6));
            std::cout << "exported " << checkpoint.folder << " (step " << checkpoint.manifest.step
                      << ", " << checkpoint.config.moe.num_experts << " experts from "
                      << checkpoint.experts.size() << " expert files) as " << model.architecture
                      << " to " << args->out << "\n";
            for (const std::string& note : model.notes) std::cout << "  note: " << note << "\n";
            return 0;
          }};
}

Command add_logits_command(CLI::App& app) {
  auto args = std::make_shared<LogitsArgs>();
  CLI::App* sub = app.add_subcommand(
      "logits", "A checkpoint's next-token logits on seeded random sequences (safetensors)");
  sub->add_option("checkpoint", args->checkpoint,
                  "A run's checkpoints folder (its latest is read) or one step folder")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->add_option("--sequences", args->sequences, "How many sequences")->check(CLI::PositiveNumber);
  sub->add_option("--length", args->length, "Tokens per sequence (at most model.max_seq_len)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--seed", args->seed, "Seed of the random tokens");
  sub->add_option("--out", args->out, "Safetensors file: tokens [N, L] and logits [N, L, V]")
      ->required();
  return {sub, [args] {
            const CheckpointContents checkpoint = read_checkpoint(args->checkpoint);
            Config config = checkpoint.config;
            if (config.train.loss == "classify")
              throw Error(checkpoint.folder +
                          ": the model has no language-model head (train.loss: classify)");
            if (args->length > config.model.max_seq_len)
              throw Error("--length " + std::to_string(args->length) +
                          ": expected at most model.max_seq_len (" +
                          std::to_string(config.model.max_seq_len) + ")");
            // The model, not a serving choice: every assignment computed, as transformers does.
            config.moe.eval_capacity_factor = 0.0;
            const at::ScalarType dtype = config.train.dtype == "float64" ? at::kDouble : at::kFloat;
            Transformer model(config, dtype, nullptr, nullptr);
            load_weights(checkpoint, model.parameters(), model.moe_layers());
            at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(args->seed);
            const at::Tensor tokens =
                at::randint(config.model.vocab_size, {args->sequences, args->length}, gen,
                            at::TensorOptions().dtype(at::kLong));
            c10::NoGradGuard no_grad;
            const ModelOutput out =
                model.forward(tokens, at::ones_like(tokens), /*training=*/false);
            const std::string bytes =
                encode_safetensors({{"tokens", tokens}, {"logits", out.lm_logits_BLV}});
            std::ofstream file(args->out, std::ios::binary);
            file.write(bytes.data(), std::streamsize(bytes.size()));
            if (!file) throw Error(args->out + ": cannot write");
            std::cout << "logits of " << args->sequences << " x " << args->length << " tokens from "
                      << checkpoint.folder << " to " << args->out << "\n";
            return 0;
          }};
}

}  // namespace triage
