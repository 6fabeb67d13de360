// The expert-parallel exchange: the collectives that move a layer's rows (the layer's
// others are the balance loss's all-reduce, aux_losses.h, and expert choice's selection,
// expert_choice.h); the router, capacity, permute and experts are local.
// dispatch() sorts the kept assignments by global expert (hence by owning rank), swaps the
// counts with every rank and packs each assignment's token row: the plan of what travels.
// expert_outputs() then applies the experts to the packed rows wherever they live,
// pipelining the row exchange with the expert compute (expert_pipeline.h) on either GEMM
// path: this rank's own rows stay home and compute while the others' rows travel, in
// moe.exchange_chunks pieces. combine() forms each token's gate-weighted sum of its
// rows' outputs. All three are differentiable; the backward of a row exchange is the exchange of
// the gradients the other way.
//
// Legend: T local tokens, K choices, D width, E global experts, P ranks in the EP group,
// L = E / P local experts (rank p owns experts p*L .. p*L+L-1), R packed rows, S rows
// received.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "moe/expert_pipeline.h"
#include "moe/experts.h"
#include "moe/permute.h"
#include "parallel/communicator.h"

namespace triage {

struct DispatchPlan {
  ExpertOrder order;               // kept local assignments, by global expert
  std::vector<int64_t> send_rows;  // P: rows sent to each rank
  std::vector<int64_t> recv_rows;  // P: rows received from each rank
  ExpertLayout layout;             // the pipelined exchange
};

struct Dispatched {
  at::Tensor x_RD;  // each kept assignment's token row, by global expert
  DispatchPlan plan;
};

// `chunks`: moe.exchange_chunks. extra_counts: see sort_by_expert (plan.order.extra_counts).
Dispatched dispatch(const at::Tensor& x_TD, const at::Tensor& experts_TK, const at::Tensor& keep_TK,
                    int64_t num_experts, Communicator& ep, int64_t chunks = 1,
                    const at::Tensor& extra_counts = {});

// Each packed row's expert output, in packed order. while_in_flight runs once, while the
// dispatched rows travel (before any expert computes).
at::Tensor expert_outputs(const at::Tensor& x_RD, const DispatchPlan& plan, const Experts& experts,
                          Communicator& ep, const InFlightWork& while_in_flight = {});

at::Tensor combine(const at::Tensor& y_RD, const at::Tensor& weights_TK, const DispatchPlan& plan);

}  // namespace triage
