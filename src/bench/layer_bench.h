// `triage bench layer` (under mpirun): the expert-parallel MoE layer, forward + backward at
// EP = the world, side by side with a data-parallel dense FFN of equal active FLOPs and
// with raw MPI all-to-alls of the same bytes, plus a per-phase breakdown from the same
// layer run with phase_clock on. One JSON line per run (sweeps append to one file).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include "bench/options.h"

namespace triage {

struct LayerBenchOptions {
  bench::LayerShape shape;           // --experts: a multiple of the ranks
  double capacity_factor = 0.0;      // 0: dropless
  std::string routing = "uniform";   // uniform (the random router), or a moe.routing_override
  std::string expert_gemm = "loop";  // loop | grouped | auto (moe.expert_gemm)
  int64_t exchange_chunks = 1;       // moe.exchange_chunks
  std::string dispatch = "auto";     // moe.dispatch: per_rank | per_choice | auto
  std::string exchange = "auto";     // moe.exchange: flat | hierarchical | auto
  int64_t topk_groups = 0;           // node-limited routing over the live hosts; 0 = none
  int64_t threads = 1;  // LibTorch threads per rank; 0 = its CPUs / the ranks sharing them
  bench::Repetitions repetitions;
  std::string out;  // append the JSON line here (default: stdout)
};

CLI::App* add_layer_bench(CLI::App& bench, LayerBenchOptions& options);
int run_layer_bench(const LayerBenchOptions& options);

}  // namespace triage
