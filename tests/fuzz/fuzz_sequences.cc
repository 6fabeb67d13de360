// Fuzzes the FASTA / Stockholm readers (plain or gzip, chosen by content): any bytes either
// read as sequences or are refused with triage::Error.
#include "common/error.h"
#include "data/sequence_io.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = triage::fuzzing::as_file(data, size);
  try {
    triage::read_sequences(path, 64);
  } catch (const triage::Error&) {
  }
  return 0;
}
