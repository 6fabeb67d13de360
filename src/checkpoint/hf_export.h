// A Triage checkpoint in the layout of a Hugging Face transformers model class that computes
// exactly what the Triage model computes (hf_format.h), or a refusal that says what differs.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"

namespace triage {

struct HfModel {
  std::string architecture;        // MixtralForCausalLM | Qwen2MoeForCausalLM
  nlohmann::ordered_json config;   // config.json
  TensorMap tensors;               // by the class's parameter names
  std::vector<std::string> notes;  // exact rewrites made on the way (said to the user)
};

// drop_class_head: export the language model of a model that also has a classification
// head (the head is left out, and a note says so); otherwise such a model is refused.
// Throws Error naming what no class can represent.
HfModel to_hf_model(const CheckpointContents& checkpoint, bool drop_class_head);

// The tensors stored as `dtype` (float32, float64 or bfloat16, rounded to nearest even) and
// config.json's dtype to match; a note says when values were rounded.
void cast_hf_model(HfModel& model, at::ScalarType dtype);

// Writes config.json and model.safetensors into out_dir, or, when the tensors pass
// max_shard_bytes, model-0000k-of-0000n.safetensors and model.safetensors.index.json.
void write_hf_model(const HfModel& model, const std::string& out_dir, uint64_t max_shard_bytes);

}  // namespace triage
