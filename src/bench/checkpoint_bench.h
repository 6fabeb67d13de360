// `triage bench checkpoint CONFIG` (one process or under mpirun): the peak resident memory
// that saving and then loading a checkpoint of the config's model adds on each rank, beside
// the state it saves (weights and AdamW moments) and its largest tensor. One JSON line.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace triage {

struct CheckpointBenchOptions {
  std::string config_path;
  std::vector<std::string> overrides;             // --set section.key=value
  std::string run_dir = "runs/bench-checkpoint";  // the bench's scratch folder (replaced)
  std::string out;                                // append the JSON line here (default: stdout)
};

CLI::App* add_checkpoint_bench(CLI::App& bench, CheckpointBenchOptions& options);
int run_checkpoint_bench(const CheckpointBenchOptions& options);

}  // namespace triage
