// Capacity arithmetic and the two drop policies, vectorised with stable sorts.
#include "moe/capacity.h"

#include <cmath>

#include "common/error.h"

namespace triage {

int64_t expert_capacity(double capacity_factor, int64_t tokens, int64_t top_k, int64_t num_experts,
                        int64_t min_capacity) {
  if (capacity_factor <= 0) return kDropless;
  const double share = capacity_factor * double(tokens) * double(top_k) / double(num_experts);
  // The epsilon keeps an exact product such as 1.25 * 8 * 2 / 4 = 5 from rounding up to 6.
  const auto capacity = static_cast<int64_t>(std::ceil(share - 1e-9));
  return std::max(capacity, min_capacity);
}

DropPolicy parse_drop_policy(const std::string& name) {
  if (name == "position") return DropPolicy::kPosition;
  TRIAGE_ASSERT(name == "score", "unknown drop policy " << name);
  return DropPolicy::kScore;
}

at::Tensor capacity_keep_mask(const at::Tensor& experts_TK, const at::Tensor& scores_TK,
                              int64_t num_experts, int64_t capacity, DropPolicy policy) {
  at::Tensor expert_A = experts_TK.reshape({-1});  // A = T*K, token-major
  if (capacity == kDropless) return at::ones_like(experts_TK, at::kBool);

  // Priority order: assignment index (= token order) or descending score. Stable sorts
  // keep the earlier token first among equals.
  at::Tensor order_A = at::arange(expert_A.numel(), expert_A.options());
  if (policy == DropPolicy::kScore) {
    order_A = std::get<1>(at::sort(scores_TK.detach().reshape({-1}), /*stable=*/true,
                                   /*dim=*/0, /*descending=*/true));
  }
  // Then group by expert, keeping the priority order inside each expert.
  at::Tensor by_expert =
      std::get<1>(at::sort(expert_A.index_select(0, order_A), /*stable=*/true, 0, false));
  order_A = order_A.index_select(0, by_expert);
  at::Tensor sorted_expert_A = expert_A.index_select(0, order_A);

  // Rank of each assignment within its expert = position - start of the expert's segment.
  at::Tensor counts_E = at::bincount(sorted_expert_A, {}, num_experts);
  at::Tensor starts_E = counts_E.cumsum(0) - counts_E;
  at::Tensor rank_A =
      at::arange(expert_A.numel(), expert_A.options()) - starts_E.index_select(0, sorted_expert_A);
  at::Tensor keep_A = at::empty_like(expert_A, at::kBool);
  keep_A.index_put_({order_A}, rank_A < capacity);
  return keep_A.view(experts_TK.sizes());
}

}  // namespace triage
