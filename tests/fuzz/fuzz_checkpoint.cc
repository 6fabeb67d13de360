// Fuzzes the checkpoint reader's two parsers: the first byte picks the manifest (even) or a
// safetensors file (odd); the rest is the file. Either parses or is refused with Error.
#include <string>

#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"
#include "common/error.h"
#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const triage::Config config = triage::default_config({"moe.num_experts=4"});
  const std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] % 2 == 0)
      triage::parse_manifest(bytes, "manifest.json", config);
    else
      triage::decode_safetensors(bytes, "expert.safetensors");
  } catch (const triage::Error&) {
  }
  return 0;
}
