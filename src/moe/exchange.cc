// Dispatch, the experts across ranks, and combine; see exchange.h.
#include "moe/exchange.h"

#include <cstdint>

#include "common/error.h"
#include "parallel/phase_clock.h"

namespace triage {

Dispatched dispatch(const at::Tensor& x_TD, const at::Tensor& experts_TK, const at::Tensor& keep_TK,
                    int64_t num_experts, Communicator& ep, int64_t chunks,
                    const at::Tensor& extra_counts) {
  const int64_t ranks = ep.size();
  TRIAGE_ASSERT(num_experts % ranks == 0, num_experts << " experts over " << ranks << " ranks");
  const int64_t local_experts = num_experts / ranks;

  Dispatched out;
  DispatchPlan& plan = out.plan;
  phase_clock::enter(Phase::kSortPack);
  plan.order = sort_by_expert(experts_TK, keep_TK, num_experts, extra_counts);
  // Rows are grouped by global expert, hence already by destination rank.
  plan.send_rows.assign(ranks, 0);
  for (int64_t e = 0; e < num_experts; ++e)
    plan.send_rows[e / local_experts] += plan.order.tokens_per_expert[e];

  // received_counts[p * L + l]: rows source rank p sends for my local expert l.
  const std::vector<int64_t> received_counts = [&] {
    phase_clock::CollectiveScope collective(Phase::kCountExchange, ep);
    return ep.alltoall(plan.order.tokens_per_expert);
  }();
  plan.recv_rows.assign(ranks, 0);
  for (int64_t p = 0; p < ranks; ++p)
    for (int64_t l = 0; l < local_experts; ++l)
      plan.recv_rows[p] += received_counts[p * local_experts + l];

  phase_clock::enter(Phase::kSortPack);
  plan.layout = expert_parallel_layout(plan.order.tokens_per_expert, received_counts, ep.rank(),
                                       int(ranks), chunks);
  out.x_RD = gather_rows(x_TD, plan.order);
  return out;
}

at::Tensor expert_outputs(const at::Tensor& x_RD, const DispatchPlan& plan, const Experts& experts,
                          Communicator& ep, const InFlightWork& while_in_flight) {
  return experts.forward_across(x_RD, plan.layout, ep, while_in_flight,
                                experts.uses_grouped_gemm(x_RD));
}

at::Tensor combine(const at::Tensor& y_RD, const at::Tensor& weights_TK, const DispatchPlan& plan) {
  phase_clock::enter(Phase::kCombine);
  return combine_rows(y_RD, weights_TK, plan.order);
}

}  // namespace triage
