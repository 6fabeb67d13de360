// `triage bench reader CONFIG` (one process or under mpirun): how fast each rank reads its
// share of the training data, as the trainer does (the seeded order, its slice of each
// global batch, padded into a batch), from the page cache and, with --cold, from the disk.
// The tokens per second to compare with a step's: the reader must never be what a step
// waits on. One JSON line.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace triage {

struct ReaderBenchOptions {
  std::string config_path;
  std::vector<std::string> overrides;  // --set section.key=value
  int64_t steps = 200;                 // training steps' worth of reading, timed
  bool cold = false;                   // drop the data file's pages from the cache first
  std::string out;                     // append the JSON line here (default: stdout)
};

CLI::App* add_reader_bench(CLI::App& bench, ReaderBenchOptions& options);
int run_reader_bench(const ReaderBenchOptions& options);

}  // namespace triage
