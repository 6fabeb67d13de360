// A checkpoint's manifest.json: what the checkpoint holds and how to verify it. Parsing is
// pure (no tensors, no files) so that a damaged or foreign manifest is refused with one
// line before any tensor file is read, and so that the parser can be fuzzed on its own.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "config/config.h"

namespace triage {

constexpr const char* kCheckpointFormat = "triage-checkpoint-1";

struct ManifestFile {
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
};

struct CheckpointManifest {
  int64_t step = 0, samples_seen = 0, optimizer_step = 0;
  int64_t num_experts = 0;
  // 0: AdamW moments are stored whole beside the weights; N: in pieces in the N files
  // optimizer-00000 .. optimizer-<N-1>.safetensors (a sharded optimizer's, one per rank).
  int64_t optimizer_shards = 0;
  std::string dtype, run_id;
  std::map<std::string, ManifestFile> files;
};

// Parses `text` (read from `path`) and checks it against the model being trained: format,
// expert count, dtype, and non-negative positions and sizes. Throws Error naming `path`.
CheckpointManifest parse_manifest(const std::string& text, const std::string& path,
                                  const Config& config);

}  // namespace triage
