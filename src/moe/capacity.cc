// Capacity arithmetic and the two drop policies, vectorised with stable sorts.
#include "moe/capacity.h"

#include <cmath>

#include "common/error.h"
#include "moe/count_ids.h"

namespace triage {

int64_t expert_capacity(double capacity_factor, int64_t tokens, int64_t top_k, int64_t num_experts,
                        int64_t min_capacity) {
  if (capacity_factor <= 0) return kDropless;
  const double share = capacity_factor * double(tokens) * double(top_k) / double(num_experts);
  // The epsilon keeps an exact product such as 1.25 * 8 * 2 / 4 = 5 from rounding up to 6.
  const auto capacity = static_cast<int64_t>(std::ceil(share - 1e-9));
  return std::max(capacity, min_capacity);
}

at::Tensor capacity_keep_mask(const at::Tensor& experts_TK, const at::Tensor& scores_TK,
                              int64_t num_experts, int64_t capacity, DropPolicy policy,
                              const at::Tensor& eligible_T) {
  at::Tensor expert_A = experts_TK.reshape({-1});  // A = T*K, token-major
  const at::Tensor eligible_A =
      eligible_T.defined()
          ? eligible_T.to(at::kBool).unsqueeze(1).expand_as(experts_TK).reshape({-1})
          : at::Tensor();
  if (capacity == kDropless)
    return eligible_A.defined() ? eligible_A.view(experts_TK.sizes()).clone()
                                : at::ones_like(experts_TK, at::kBool);
  // Ineligible assignments queue at a bin of their own, past the last expert, so they
  // take no expert's place.
  if (eligible_A.defined())
    expert_A = at::where(eligible_A, expert_A, at::full_like(expert_A, num_experts));

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
  at::Tensor counts_E = count_ids(sorted_expert_A, num_experts + 1);
  at::Tensor starts_E = counts_E.cumsum(0) - counts_E;
  at::Tensor rank_A =
      at::arange(expert_A.numel(), expert_A.options()) - starts_E.index_select(0, sorted_expert_A);
  at::Tensor keep_A = at::empty_like(expert_A, at::kBool);
  keep_A.index_put_({order_A}, rank_A < capacity);
  if (eligible_A.defined()) keep_A.logical_and_(eligible_A);
  return keep_A.view(experts_TK.sizes());
}

int64_t receive_quota(double factor, int64_t tokens, int64_t top_k, int64_t ranks) {
  if (factor <= 0) return kDropless;
  // The epsilon keeps an exact quotient such as 1.5 * 8 * 2 / 4 = 6 from rounding down to 5.
  return static_cast<int64_t>(
      std::floor(factor * double(tokens) * double(top_k) / double(ranks) + 1e-9));
}

at::Tensor receive_bound_keep_mask(const at::Tensor& experts_TK, const at::Tensor& keep_TK,
                                   int64_t experts_per_rank, int64_t ranks, int64_t quota,
                                   at::Tensor& dropped_P) {
  if (quota == kDropless) {
    dropped_P = at::zeros({ranks}, experts_TK.options().dtype(at::kLong));
    return keep_TK;
  }
  // Position of each kept assignment among the kept ones to its destination, in
  // assignment (= token) order: a running count per destination column.
  at::Tensor destination_A = at::div(experts_TK.reshape({-1}), experts_per_rank, "floor");
  at::Tensor kept_A = keep_TK.reshape({-1});
  at::Tensor one_hot_AP = at::one_hot(destination_A, ranks).logical_and_(kept_A.unsqueeze(1));
  at::Tensor position_A = one_hot_AP.cumsum(0).gather(1, destination_A.unsqueeze(1)).squeeze(1);
  at::Tensor bounded_A = kept_A.logical_and(position_A <= quota);
  dropped_P = count_ids(destination_A, ranks, kept_A.logical_and(bounded_A.logical_not()));
  return bounded_A.view(keep_TK.sizes());
}

}  // namespace triage
