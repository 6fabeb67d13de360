// `triage bench calibrate --out PARAMS.json` (under mpirun): measures link latency and
// bandwidth (ping-pong and all-to-all, on shared memory and between hosts) and the
// layer's compute rates at a given shape, for the scaling model (`triage bench model`);
// given a config, the dense part of its step is rated on the config's own model.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "bench/options.h"

namespace triage {

struct CalibrateOptions {
  bench::LayerShape shape{1024, 128, 256, 8, 2};
  std::string expert_gemm = "loop";
  bench::Repetitions repetitions;
  int64_t max_bytes = int64_t(64) << 20;
  double slots_per_host = 0;  // ranks a host runs at full speed; 0 = its hardware threads
  double link_burst = 0;      // stated: the network links' token-bucket burst, bytes
  // Optional: a config whose own model rates the dense part of a step (see calibrate_bench.cc).
  std::string config_path;
  std::vector<std::string> overrides;
  std::string out;
};

CLI::App* add_calibrate_bench(CLI::App& bench, CalibrateOptions& options);
int run_calibrate_bench(const CalibrateOptions& options);

}  // namespace triage
