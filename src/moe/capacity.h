// Expert capacity: how many assignments one expert may take in a batch, and which
// assignments are dropped when more arrive. Pure tensor code, no communication.
//   capacity = max(min_capacity, ceil(capacity_factor * tokens * top_k / num_experts))
// A capacity_factor of 0 means dropless (kDropless).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace triage {

constexpr int64_t kDropless = -1;

int64_t expert_capacity(double capacity_factor, int64_t tokens, int64_t top_k, int64_t num_experts,
                        int64_t min_capacity);

enum class DropPolicy {
  kPosition,  // each expert keeps its earliest tokens (batch order)
  kScore,     // each expert keeps its highest-scoring tokens (ties: earlier token)
};
DropPolicy parse_drop_policy(const std::string& name);

// keep_TK (bool): which of the T*K assignments fit their expert's capacity.
// scores_TK ranks assignments under kScore; it is ignored under kPosition.
at::Tensor capacity_keep_mask(const at::Tensor& experts_TK, const at::Tensor& scores_TK,
                              int64_t num_experts, int64_t capacity, DropPolicy policy);

}  // namespace triage
