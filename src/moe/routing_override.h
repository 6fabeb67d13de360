// Forced routing for tests and benchmarks (moe.routing_override): replaces the router's
// choice of experts with a balanced, hot, Zipf-skewed or rank-avoiding one, so that
// reliability tests and benchmarks can produce any load pattern on demand. The gate weights
// are still the router's scores at the chosen experts, so gradients reach the gate.
//
// Every choice is a pure function of (layer seed, global token index, choice k), never of
// which rank holds the token: a batch split over ranks routes exactly as the same batch on
// one rank, so the one-rank reference applies unchanged.
// Legend: T tokens, E experts, K choices per token.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace triage {

// experts_TK: the router's choice; scores_TE: its scores (only read by empty_rank).
// first_token: the global index of this batch's first token. experts_per_rank: E / EP size,
// naming the experts of each EP rank for empty_rank. step: which recorded step replay
// draws from (cycling). Returns int64 experts_TK.
at::Tensor override_routing(const RoutingOverride& rule, const at::Tensor& experts_TK,
                            const at::Tensor& scores_TE, int64_t first_token, uint64_t seed,
                            int64_t experts_per_rank, int64_t step = 0);

// replay:RUN_DIR reads RUN_DIR/metrics.jsonl: each training step's tokens_per_expert of the
// first MoE layer, which must have num_experts entries. Throws Error naming the file and
// line on anything else.
std::vector<std::vector<double>> load_replay_loads(const std::string& run_dir, int64_t num_experts);

}  // namespace triage
