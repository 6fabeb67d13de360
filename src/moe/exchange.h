// The expert-parallel exchange: the only code in the MoE layer that communicates.
// dispatch() sends each kept assignment's token row to the rank that owns its expert;
// what arrives is ordered by source rank, then local expert, and is described as runs of
// rows per local expert, so the experts compute on it in place (no regrouping copy).
// combine() sends the results back the same way and forms the gate-weighted sum.
// dispatch keeps no state: it returns a plan that combine takes back. Both directions are
// differentiable: the backward of an all-to-all is the all-to-all of the gradients with
// send and receive counts swapped.
//
// Legend: T local tokens, K choices, D width, E global experts, P ranks in the EP group,
// L = E / P local experts (rank p owns experts p*L .. p*L+L-1), S rows received.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "dist/communicator.h"
#include "moe/experts.h"
#include "moe/permute.h"

namespace triage {

struct DispatchPlan {
  ExpertOrder order;                           // kept local assignments, by global expert
  std::vector<int64_t> send_rows;              // P: rows sent to each rank
  std::vector<int64_t> recv_rows;              // P: rows received from each rank
  std::vector<ExpertRun> runs;                 // received rows: (source, local expert) runs
  std::vector<int64_t> rows_per_local_expert;  // L: rows each local expert received
};

struct Dispatched {
  at::Tensor x_SD;  // received rows, by source rank then local expert (see plan.runs)
  DispatchPlan plan;
};

Dispatched dispatch(const at::Tensor& x_TD, const at::Tensor& experts_TK, const at::Tensor& keep_TK,
                    int64_t num_experts, Communicator& ep);

at::Tensor combine(const at::Tensor& y_SD, const at::Tensor& weights_TK, const DispatchPlan& plan,
                   Communicator& ep);

}  // namespace triage
