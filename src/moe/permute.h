// Permutation between token order and expert order. Pure and stateless: sort_by_expert()
// returns the plan, and the two functions below apply it in each direction. Autograd
// flows through both (index_select / index_add), including into the gate weights.
// Legend: T tokens, K choices per token, E experts, R kept assignments (rows), D width.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace triage {

struct ExpertOrder {
  at::Tensor assignment_of_row_R;          // int64 index into the flattened T*K assignments
  at::Tensor token_of_row_R;               // int64 source token of each row
  std::vector<int64_t> tokens_per_expert;  // E counts on the host; rows are grouped by expert
  // The way back, token by token: for the kept assignments in token order, the row that
  // holds each one, and where each token's run of kept assignments starts (T entries).
  at::Tensor row_of_kept_A;
  at::Tensor kept_offsets_T;
  std::vector<int64_t> extra_counts;  // sort_by_expert's extra_counts, on the host
};

// Rows for the kept assignments, grouped by expert (stable: token order inside an expert).
// Reads the per-expert counts back to the host: the layer's one device-to-host sync.
// extra_counts: int64 values on the device that the caller needs on the host as well
// (statistics); they ride in the same copy instead of paying a sync of their own.
ExpertOrder sort_by_expert(const at::Tensor& experts_TK, const at::Tensor& keep_TK,
                           int64_t num_experts, const at::Tensor& extra_counts = {});

// x_RD: each kept assignment's token row, in expert order.
at::Tensor gather_rows(const at::Tensor& x_TD, const ExpertOrder& order);

// y_TD[t] = sum over t's kept choices of weight * expert row; dropped choices add zero.
// One pass (an embedding bag per token), differentiable in both the rows and the weights.
at::Tensor combine_rows(const at::Tensor& y_RD, const at::Tensor& weights_TK,
                        const ExpertOrder& order);

}  // namespace triage
