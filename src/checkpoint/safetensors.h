// Tensor files in the safetensors format (github.com/huggingface/safetensors): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then the
// raw bytes. Chosen so that Python users can open our checkpoints with `safetensors` or
// inspect them by hand, and because the bytes are stored exactly (bitwise resume).
// Files are written and read one tensor at a time, straight from and into the tensors'
// memory, so a checkpoint's peak memory is its largest tensor, not its largest file.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/durable_file.h"

namespace triage {

using TensorMap = std::map<std::string, at::Tensor>;

// Writes `tensors` (float32/float64/bfloat16/float16/int64/uint8, any device) to `path` durably,
// one tensor at a time; returns the file's size and CRC-32. metadata: the format's optional string
// map (Hugging Face loaders expect {"format": "pt"}).
FileDigest write_safetensors(const std::string& path, const TensorMap& tensors,
                             const std::map<std::string, std::string>& metadata = {});

// An open tensor file whose header has been read and checked against the file's size.
// The data must tile the file as the format's own reader requires: tensors back to back in
// offset order from the header's end, no gaps, no overlaps, nothing after the last.
class SafetensorsFile {
 public:
  struct Entry {
    at::ScalarType dtype = at::kFloat;
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;  // offsets in the data section
  };

  // expected: the size and checksum a manifest records; the whole file is checked against
  // them (read in pieces) before the constructor returns. Throws Error naming `path`.
  explicit SafetensorsFile(const std::string& path,
                           const std::optional<FileDigest>& expected = std::nullopt);

  const std::string& path() const;
  // Checks the whole file against a manifest's size and checksum, as the constructor does
  // when given them; for files whose header is read before it is known they are needed.
  void verify(const FileDigest& expected) const;
  const std::map<std::string, Entry>& entries() const { return entries_; }
  // The entry `name`; Error "<path>: missing tensor <name> (...)" if there is none.
  const Entry& entry(const std::string& name) const;
  // Reads tensor `name` into `destination`, which must have its shape and dtype (the
  // caller checks them against entry()); contiguous CPU destinations are read in place.
  void read_into(const std::string& name, const at::Tensor& destination) const;
  at::Tensor read(const std::string& name) const;
  TensorMap read_all() const;

 private:
  std::unique_ptr<FileReader> file_;
  uint64_t data_start_ = 0;
  std::map<std::string, Entry> entries_;
};

// The same format in memory, for small files and tests.
std::string encode_safetensors(const TensorMap& tensors,
                               const std::map<std::string, std::string>& metadata = {});
// Parses `bytes` (read from `path`, named in errors); the tensors own their memory.
TensorMap decode_safetensors(const std::string& bytes, const std::string& path);

}  // namespace triage
