// Fuzzes the YAML config loader: any bytes either load as a valid config or are refused
// with triage::Error; anything else (a crash, a sanitizer report, another exception) is a bug.
#include "common/error.h"
#include "config/config.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = triage::fuzzing::as_file(data, size);
  try {
    triage::load_config(path);
  } catch (const triage::Error&) {
  }
  return 0;
}
