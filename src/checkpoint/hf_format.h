// A Triage checkpoint in the layout of a Hugging Face transformers model class that computes
// exactly what the Triage model computes, or a refusal that says what differs:
//   Mixtral (MixtralForCausalLM): softmax top-k routing with renormalised gates, SwiGLU
//     experts, every block MoE, no shared experts;
//   Qwen2-MoE (Qwen2MoeForCausalLM): the same, plus dense blocks (mlp_only_layers), shared
//     experts, and gates without renormalisation (norm_topk_prob: false).
// Both: rotary positions (LLaMA's half-split RoPE, theta 10000), RMSNorm, causal multi-head
// attention without biases, an untied LM head. The tensors carry the names and [out, in]
// orientation of the classes' checkpoints on the Hub (one tensor per expert), which every
// transformers version since Mixtral's release loads.
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

// Writes config.json and model.safetensors into out_dir, or, when the tensors pass
// max_shard_bytes, model-0000k-of-0000n.safetensors and model.safetensors.index.json.
void write_hf_model(const HfModel& model, const std::string& out_dir, uint64_t max_shard_bytes);

// The inverse of to_hf_model: the Triage model a Mixtral or Qwen2-MoE folder (config.json
// with model.safetensors, or shards and their index; the Hub's per-expert tensors or
// transformers' fused ones) describes, and its weights by Triage's parameter names (experts
// stacked by global id). Throws Error naming the file and what Triage cannot represent.
struct ImportedModel {
  Config config;                   // model and moe sections from config.json; the rest defaults
  TensorMap parameters;            // by Triage's names, in the checkpoint's dtype
  std::vector<std::string> notes;  // exact rewrites made on the way
};
ImportedModel read_hf_model(const std::string& dir);

}  // namespace triage
