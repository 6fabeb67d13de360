// `triage bench model --params FILE (--check RESULTS.jsonl | CONFIG --ranks ...)`: the
// scaling model (scaling_model.h) checked against measured `bench layer` points, or
// projecting a config's training step to other world sizes and clusters.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace triage {

struct BenchModelOptions {
  std::string params;
  std::string check;
  std::string config_path;
  std::vector<std::string> overrides;
  std::vector<int64_t> ranks = {8, 16, 32, 64, 128, 256, 512, 1024};
  int64_t ranks_per_host = 8;
  int64_t tokens_per_rank = 4096;
  std::string routing = "uniform";
  std::string exchange = "flat";  // flat | hierarchical
  int64_t node_limit = 0;         // topk_groups over the EP group's hosts; 0 = none
  double device_gb = 0;           // device memory to check the per-rank estimate against
  double runtime_gb = -1;         // the runtime's own memory; < 0: default_runtime_bytes
  std::string out;
};

CLI::App* add_model_bench(CLI::App& bench, BenchModelOptions& options);
int run_model_bench(const BenchModelOptions& options);

}  // namespace triage
