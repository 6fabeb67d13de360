// `triage bench calibrate --out PARAMS.json` (under mpirun): measures link latency and
// bandwidth (ping-pong and all-to-all, on shared memory and between hosts) and the
// layer's compute rates at a given shape, for the scaling model (`triage bench model`).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace triage {

struct CalibrateOptions {
  int64_t tokens = 1024;  // per rank
  int64_t d_model = 128;
  int64_t d_expert = 256;
  int64_t experts = 8;
  int64_t top_k = 2;
  std::string expert_gemm = "loop";
  int64_t reps = 10;
  int64_t warmup = 2;
  int64_t max_bytes = int64_t(64) << 20;
  double slots_per_host = 0;  // ranks a host runs at full speed; 0 = its hardware threads
  std::string out;
};

CLI::App* add_calibrate_bench(CLI::App& bench, CalibrateOptions& options);
int run_calibrate_bench(const CalibrateOptions& options);

}  // namespace triage
