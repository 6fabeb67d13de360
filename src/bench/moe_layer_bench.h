// `triage bench moe-layer`: one MoE layer's forward + backward throughput on one device,
// side by side with a dense SwiGLU FFN of the same active FLOPs and with the same layer
// running its experts one GEMM at a time.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include "bench/options.h"

namespace triage {

struct MoeLayerBenchOptions {
  bench::LayerShape shape{4096, 512, 1024, 8, 2};  // --tokens: per batch
  bench::Repetitions repetitions;
  std::string device = "cpu";     // cpu | cuda
  std::string dtype = "float32";  // float32 | bfloat16
  std::string out;                // JSON file; default stdout
};

CLI::App* add_moe_layer_bench(CLI::App& bench, MoeLayerBenchOptions& options);
int run_moe_layer_bench(const MoeLayerBenchOptions& options);

}  // namespace triage
