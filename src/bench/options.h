// The options benchmarks share, declared and registered once: the MoE layer's shape (the
// layer, one-process layer and calibration benches time the same SwiGLU layer), the
// repetitions, the output file and --routing.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace triage::bench {

// One SwiGLU MoE layer. Legend in the benches: T tokens, D width, H expert width,
// E experts, K top-k.
struct LayerShape {
  int64_t tokens = 2048;  // per rank (per batch in one process)
  int64_t d_model = 256;
  int64_t d_expert = 512;
  int64_t experts = 8;  // in all
  int64_t top_k = 2;
};

// --tokens, --d-model, --d-expert, --experts, --top-k with their defaults shown;
// `tokens_help` and `experts_help` say what these mean to this bench.
void add_layer_shape_options(CLI::App& bench, LayerShape& shape, const std::string& tokens_help,
                             const std::string& experts_help = "Experts in all");

// Error "--top-k K: expected at most --experts (E)" when the shape cannot route.
void check_layer_shape(const LayerShape& shape);

// The layer the shape names: dropless SwiGLU experts, every other key its default.
MoeConfig layer_config(const LayerShape& shape);

// Forward + backward FLOPs of `tokens` through K of the experts (the active FLOPs): each
// of the 3 matrices costs 2 D H per token forward and twice that backward. A dense SwiGLU
// FFN of hidden width K H costs the same.
double active_flops(const LayerShape& shape, double tokens);

struct Repetitions {
  int64_t reps = 10;   // timed
  int64_t warmup = 2;  // untimed, first
};
void add_repetition_options(CLI::App& bench, Repetitions& repetitions);

// CONFIG (positional, an existing file) and --set section.key=value (repeatable), as
// `triage train` takes them: the benches that run or project a config's model.
void add_config_options(CLI::App& bench, std::string& config_path,
                        std::vector<std::string>& overrides, bool required,
                        const std::string& help = "YAML config file");

// --out FILE: "Append the JSON line to this file (default: stdout)" or as `help` says.
void add_out_option(
    CLI::App& bench, std::string& out,
    const std::string& help = "Append the JSON line to this file (default: stdout)");

// --routing of a benchmark: "uniform" (Kind::kNone: the router decides) or a
// moe.routing_override naming only experts and ranks of this layout; replay's loads are
// read here. Error "--routing R: expected ..." otherwise.
RoutingOverride parse_bench_routing(const std::string& routing, int64_t experts, int64_t ranks,
                                    int64_t top_k);

}  // namespace triage::bench
