// The per_rank exchange (token_exchange.h) pipelined, for moe.exchange_chunks > 1: the
// units (one row per (token, destination rank)) travel in `chunks` exchanges, chunk j
// carrying the j-th near-equal share of the units each rank sends each other rank. A
// receiving rank computes this rank's own units first, while every chunk is in flight, then
// chunk by chunk: waits, fans each unit's row out to its experts, forms each unit's
// gate-weighted sum, and starts those sums home while later chunks still travel. Backward
// runs the same schedule with the gradients (pipeline_schedule.h), on either GEMM path.
//
// Arithmetic: each expert row by its run alone (expert_math.h); a unit's sum in the order of
// its choices (by expert), the same for any chunking; an expert's weight gradient adds its
// runs in one fixed order (own units, then chunks, sources by rank), so a run repeats bit
// for bit, and chunk counts differ only in how that sum is grouped.
//
// Legend: U units sent, V units received, Q choices received, R = Q rows computed (by
// group, then local expert), D width.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "moe/expert_math.h"
#include "parallel/autograd_collectives.h"
#include "parallel/communicator.h"

namespace triage {

// What the per_rank exchange has agreed on before its rows travel: the units' counts each
// way and, for every received choice, its unit in the receive buffer (sources in rank
// order, this rank's own included), its local expert and its gate weight.
struct ReceivedChoices {
  std::vector<int64_t> send_units;  // P: units x_UD holds for each rank, in rank order
  std::vector<int64_t> recv_units;  // P: units coming from each rank
  at::Tensor unit_Q;                // int64: each choice's unit in the receive buffer
  at::Tensor local_expert_Q;        // int64
  at::Tensor weight_Q;              // differentiable
  at::Tensor token_Q;               // int64 global token, when tokens travel; else undefined
};

// Scales for each computed row's expert output (expert dropout), given each row's choice;
// empty: none.
using RowScale = std::function<at::Tensor(const at::Tensor& choice_of_row_R)>;

// Returns y_UD: for each sent unit, its destination's gate-weighted sum of the unit's
// experts' outputs (this rank's own units computed here). Differentiable in x_UD, the
// weights in `received` and the expert weights. grouped, while_in_flight, recompute: see
// run_experts.
at::Tensor run_token_pipeline(const at::Tensor& x_UD, const ReceivedChoices& received,
                              const ExpertWeights& weights, Communicator& ep, int64_t chunks,
                              bool grouped = false, const RowScale& row_scale = {},
                              const InFlightWork& while_in_flight = {}, bool recompute = false);

}  // namespace triage
