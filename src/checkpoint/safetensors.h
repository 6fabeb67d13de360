// Tensor files in the safetensors format (github.com/huggingface/safetensors): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then the
// raw bytes. Chosen so that Python users can open our checkpoints with `safetensors` or
// inspect them by hand, and because the bytes are stored exactly (bitwise resume).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <string>

namespace triage {

using TensorMap = std::map<std::string, at::Tensor>;

// Serialised file contents; CPU tensors of float32/float64/int64/uint8. metadata: the
// format's optional string map (Hugging Face loaders expect {"format": "pt"}).
std::string encode_safetensors(const TensorMap& tensors,
                               const std::map<std::string, std::string>& metadata = {});

// Parses `bytes` (read from `path`, named in errors); the tensors own their memory.
TensorMap decode_safetensors(const std::string& bytes, const std::string& path);

}  // namespace triage
