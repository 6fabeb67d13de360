// Expert capacity: how many assignments one expert may take in a batch, and which
// assignments are dropped when more arrive. Pure tensor code, no communication.
//   capacity = max(min_capacity, ceil(capacity_factor * tokens * top_k / num_experts))
// A capacity_factor of 0 means dropless (kDropless).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/choices.h"

namespace triage {

constexpr int64_t kDropless = -1;

int64_t expert_capacity(double capacity_factor, int64_t tokens, int64_t top_k, int64_t num_experts,
                        int64_t min_capacity);

// keep_TK (bool): which of the T*K assignments fit their expert's capacity.
// scores_TK ranks assignments under kScore; it is ignored under kPosition. eligible_T
// (bool, optional): rows that may be kept; the others (padding) are never kept and take
// no place in any expert's capacity.
at::Tensor capacity_keep_mask(const at::Tensor& experts_TK, const at::Tensor& scores_TK,
                              int64_t num_experts, int64_t capacity, DropPolicy policy,
                              const at::Tensor& eligible_T = {});

// The receive bound (moe.max_receive_factor): a source rank sends at most
//   quota = floor(factor * tokens * top_k / ranks)
// rows to each of the EP group's ranks, so no rank receives more than factor x tokens x
// top_k rows (its balanced share), whatever the routing. kDropless when factor is 0.
int64_t receive_quota(double factor, int64_t tokens, int64_t top_k, int64_t ranks);

// keep_TK with the assignments beyond `quota` to any one destination rank (experts
// [p * experts_per_rank, (p + 1) * experts_per_rank) live on rank p) dropped, later tokens
// first. dropped_P (int64, size ranks, on the experts' device) receives how many were
// dropped for each destination; it stays on the device (see sort_by_expert's extra_counts).
at::Tensor receive_bound_keep_mask(const at::Tensor& experts_TK, const at::Tensor& keep_TK,
                                   int64_t experts_per_rank, int64_t ranks, int64_t quota,
                                   at::Tensor& dropped_P);

}  // namespace triage
