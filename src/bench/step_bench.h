// `triage bench step CONFIG` (under mpirun): whole training steps of a config, each split
// into compute, exchange, waiting for the slowest rank, gradient sync, optimizer and step
// bookkeeping, from the trainer's phase_clock laps. One JSON line per run.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace triage {

struct StepBenchOptions {
  std::string config_path;
  std::vector<std::string> overrides;       // --set section.key=value
  int64_t steps = 5;                        // timed steps
  int64_t warmup = 2;                       // untimed steps first
  std::string run_dir = "runs/bench-step";  // the bench's own scratch run (replaced)
  std::string out;                          // append the JSON line here (default: stdout)
  // Also the config's dense twin of equal active FLOPs (every block dense, d_ff = (top_k +
  // shared experts) x d_expert), alternating with the config for `rounds` rounds.
  bool dense_twin = false;
  int64_t rounds = 2;
  bool barriers = true;  // a timed barrier before each collective (splits out "wait")
  // The config with the gradient sync started after backward and during it
  // (train.overlap_grad_sync false / true), alternating for `rounds` rounds: how much of
  // the sync backward hides.
  bool overlap_compare = false;
};

CLI::App* add_step_bench(CLI::App& bench, StepBenchOptions& options);
int run_step_bench(const StepBenchOptions& options);

}  // namespace triage
