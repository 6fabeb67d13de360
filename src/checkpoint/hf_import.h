// A Mixtral or Qwen2-MoE folder from the Hub or save_pretrained, read as a Triage model
// (the reverse of hf_export; the layout facts are in hf_format.h).
#pragma once

#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "config/config.h"

namespace triage {

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
