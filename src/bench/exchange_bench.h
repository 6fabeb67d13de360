// `triage bench exchange` (under mpirun): the MoE exchange, dispatch + combine, against raw
// MPI_Alltoallv moving the same byte matrix out and back, side by side in one process:
// forward alone (one round trip) and forward + backward (two). Routing is uniform random or
// any moe.routing_override pattern (--routing), so skew is measured, not only balance.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include "bench/options.h"

namespace triage {

struct ExchangeBenchOptions {
  int64_t tokens = 4096;  // per rank
  int64_t width = 1024;   // floats per token row
  int64_t top_k = 2;
  int64_t experts_per_rank = 2;
  int64_t chunks = 1;  // moe.exchange_chunks
  bench::Repetitions repetitions{20, 3};
  std::string routing = "uniform";  // uniform, or a moe.routing_override pattern
  int64_t topk_groups = 0;          // moe.topk_groups with one group per rank; 0 = no limit
  std::string out;
};

CLI::App* add_exchange_bench(CLI::App& bench, ExchangeBenchOptions& options);
int run_exchange_bench(const ExchangeBenchOptions& options);

}  // namespace triage
