// `triage bench moe-layer`: one MoE layer's forward + backward throughput on one device,
// side by side with a dense SwiGLU FFN of the same active FLOPs and with the same layer
// running its experts one GEMM at a time.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace triage {

struct MoeLayerBenchOptions {
  int64_t tokens = 4096;
  int64_t d_model = 512;
  int64_t d_expert = 1024;
  int64_t experts = 8;
  int64_t top_k = 2;
  int64_t reps = 10;
  int64_t warmup = 2;
  std::string device = "cpu";     // cpu | cuda
  std::string dtype = "float32";  // float32 | bfloat16
  std::string out;                // JSON file; default stdout
};

CLI::App* add_moe_layer_bench(CLI::App& bench, MoeLayerBenchOptions& options);
int run_moe_layer_bench(const MoeLayerBenchOptions& options);

}  // namespace triage
