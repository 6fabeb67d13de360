// Dispatch, the experts across ranks, and combine; see exchange.h.
#include "moe/exchange.h"

#include <cstdint>

#include "common/error.h"
#include "parallel/autograd_collectives.h"
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
  for (int64_t p = 0; p < ranks; ++p) {
    for (int64_t l = 0; l < local_experts; ++l) {
      const int64_t rows = received_counts[p * local_experts + l];
      plan.recv_rows[p] += rows;
      if (rows > 0) (p == ep.rank() ? plan.own_runs : plan.runs).push_back({l, rows});
    }
  }

  phase_clock::enter(Phase::kSortPack);
  plan.layout = expert_parallel_layout(plan.order.tokens_per_expert, received_counts, ep.rank(),
                                       int(ranks), chunks);
  out.x_RD = gather_rows(x_TD, plan.order);
  return out;
}

at::Tensor expert_outputs(const at::Tensor& x_RD, const DispatchPlan& plan, const Experts& experts,
                          Communicator& ep, const InFlightWork& while_in_flight) {
  // The grouped GEMM takes every row of an exchange at once, so it has no chunked pipeline:
  // with moe.exchange_chunks > 1 auto takes the loop path (and grouped is refused).
  const int64_t chunks = int64_t(plan.layout.chunks.size());
  if (!experts.uses_grouped_gemm(x_RD, chunks))
    return experts.forward_across(x_RD, plan.layout, ep, while_in_flight);
  // This rank's own rows never travel: packed by global expert, they lie between the rows
  // for lower and for higher ranks, and the grouped GEMM takes them in place while the
  // others' rows are in flight.
  const int me = ep.rank();
  int64_t own_offset = 0;
  for (int p = 0; p < me; ++p) own_offset += plan.send_rows[p];
  const int64_t own_rows = plan.send_rows[me];
  at::Tensor y_own;
  const InFlightWork own_work = [&] {
    if (while_in_flight) while_in_flight();
    phase_clock::enter(Phase::kExperts);
    y_own = experts.forward(x_RD.narrow(0, own_offset, own_rows), plan.own_runs);
  };
  // The router's backward runs after the packing's (autograd runs later nodes first).
  at::Tensor x_SD = alltoallv_rows_autograd(x_RD, ep, plan.send_rows, plan.recv_rows,
                                            {Phase::kDispatchRows, Phase::kSortPackRouteBwd},
                                            own_work, /*keep_own=*/true);
  phase_clock::enter(Phase::kExperts);
  at::Tensor y_SD = experts.forward(x_SD, plan.runs);
  std::vector<int64_t> back_rows = plan.recv_rows, home_rows = plan.send_rows;
  back_rows[me] = home_rows[me] = 0;  // the own rows' outputs are home already
  const at::Tensor y_others = alltoallv_rows_autograd(y_SD, ep, back_rows, home_rows,
                                                      {Phase::kCombineRows, Phase::kExpertsBwd});
  // Back in packed order: the lower ranks' rows, the own rows, the higher ranks'.
  return at::cat({y_others.narrow(0, 0, own_offset), y_own,
                  y_others.narrow(0, own_offset, y_others.size(0) - own_offset)});
}

at::Tensor combine(const at::Tensor& y_RD, const at::Tensor& weights_TK, const DispatchPlan& plan) {
  phase_clock::enter(Phase::kCombine);
  return combine_rows(y_RD, weights_TK, plan.order);
}

}  // namespace triage
