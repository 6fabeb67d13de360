// One crossing per (token, destination rank); see token_exchange.h.
#include "moe/token_exchange.h"

#include <numeric>

#include "common/error.h"
#include "moe/count_ids.h"
#include "moe/permute.h"
#include "moe/token_pipeline.h"
#include "parallel/phase_clock.h"

namespace triage {
namespace {

std::vector<int64_t> exclusive_sum(const std::vector<int64_t>& counts) {
  std::vector<int64_t> offsets(counts.size(), 0);
  for (size_t i = 1; i < counts.size(); ++i) offsets[i] = offsets[i - 1] + counts[i - 1];
  return offsets;
}

at::Tensor host_to_tensor(const std::vector<int64_t>& values, const at::TensorOptions& options) {
  return at::tensor(values, at::TensorOptions().dtype(at::kLong)).to(options.device());
}

// How the received choices are laid out for the experts and for the sums back, as an
// ExpertOrder whose "tokens" are the received units: rows sorted by local expert (stable: by
// source, then token), and each unit's choices together, in received order (a source sends
// them by expert, so a token's choices there come in expert order).
ExpertOrder received_order(const at::Tensor& unit_Q, const at::Tensor& expert_Q, int64_t units,
                           int64_t local_experts) {
  ExpertOrder order;
  const at::Tensor by_expert = std::get<1>(at::sort(expert_Q, /*stable=*/true, 0, false));
  const at::Tensor by_unit = std::get<1>(at::sort(unit_Q, /*stable=*/true, 0, false));
  order.assignment_of_row_R = by_expert;
  order.token_of_row_R = unit_Q.index_select(0, by_expert);
  const at::Tensor row_of_choice = at::empty_like(by_expert).index_put_(
      {by_expert}, at::arange(by_expert.size(0), by_expert.options()));
  order.row_of_kept_A = row_of_choice.index_select(0, by_unit);
  const at::Tensor choices_per_unit = count_ids(unit_Q, units);
  order.kept_offsets_T = choices_per_unit.cumsum(0) - choices_per_unit;
  const at::Tensor per_expert = count_ids(expert_Q, local_experts).to(at::kCPU);
  order.tokens_per_expert.assign(per_expert.data_ptr<int64_t>(),
                                 per_expert.data_ptr<int64_t>() + local_experts);
  return order;
}

// Rows exchanged with the ranks' own rows kept home: the others' rows travel and this
// rank's are spliced in where the exchange would have put them (sources in rank order).
at::Tensor exchange_keeping_own(const at::Tensor& rows, Communicator& ep,
                                const std::vector<int64_t>& send, const std::vector<int64_t>& recv,
                                const ExchangePhases& phases, const InFlightWork& work = {}) {
  const size_t me = size_t(ep.rank());
  const at::Tensor others = alltoallv_rows_autograd(rows, ep, send, recv, phases, work, true);
  const int64_t sent_before = exclusive_sum(send)[me], received_before = exclusive_sum(recv)[me];
  return at::cat({others.narrow(0, 0, received_before), rows.narrow(0, sent_before, send[me]),
                  others.narrow(0, received_before, others.size(0) - received_before)});
}

}  // namespace

at::Tensor first_choice_per_rank(const at::Tensor& rank_TK, const at::Tensor& keep_TK,
                                 int64_t ranks) {
  // Dropped choices sort last (rank P stands for none); within a token, a choice opens a
  // unit when its rank differs from the previous kept one in rank order.
  const at::Tensor ranked_TK = at::where(keep_TK, rank_TK, at::full({}, ranks, rank_TK.options()));
  const auto [sorted_TK, index_TK] = at::sort(ranked_TK, /*stable=*/true, 1, false);
  at::Tensor opens_TK = at::ones_like(keep_TK);
  if (rank_TK.size(1) > 1)
    opens_TK.narrow(1, 1, rank_TK.size(1) - 1)
        .copy_(sorted_TK.narrow(1, 1, rank_TK.size(1) - 1) !=
               sorted_TK.narrow(1, 0, rank_TK.size(1) - 1));
  const at::Tensor first_TK = at::zeros_like(keep_TK).scatter_(1, index_TK, opens_TK);
  return first_TK & keep_TK;
}

at::Tensor tokens_reaching_rank(const at::Tensor& experts_TK, const at::Tensor& keep_TK,
                                int64_t experts_per_rank, int64_t ranks) {
  const at::Tensor rank_TK = experts_TK.div(experts_per_rank, "floor");
  const at::Tensor kept = keep_TK.defined() ? keep_TK : at::ones_like(rank_TK, at::kBool);
  return count_ids(rank_TK, ranks, first_choice_per_rank(rank_TK, kept, ranks));
}

namespace {

// The pipelined alternative to exchanging the rows and running UnitWork: given the units'
// rows before they travel and what the destinations agreed on, returns y_UD.
using PipelinedUnits =
    std::function<at::Tensor(const at::Tensor& x_UD, const ReceivedChoices& received)>;

TokenExchanged exchange_units_with(const at::Tensor& x_TD, const at::Tensor& key_TK,
                                   int64_t keys_per_destination, const at::Tensor& keep_TK,
                                   const at::Tensor& weights_TK, Communicator& comm,
                                   const at::Tensor& extra_counts, const at::Tensor& token_T,
                                   const InFlightWork& while_in_flight, const UnitWork& work,
                                   const PipelinedUnits& pipelined) {
  const int64_t ranks = comm.size(), keys = keys_per_destination * ranks, tokens = x_TD.size(0);
  const at::TensorOptions index = key_TK.options();
  TokenExchanged out;

  phase_clock::enter(Phase::kSortPack);
  // The choices, by key (hence by destination), and the units: one per (token,
  // destination), by destination then token.
  ExpertOrder choices = sort_by_expert(key_TK, keep_TK, keys, extra_counts);
  const at::Tensor rank_TK = key_TK.div(keys_per_destination, "floor");
  const ExpertOrder units =
      sort_by_expert(rank_TK, first_choice_per_rank(rank_TK, keep_TK, ranks), ranks);
  const std::vector<int64_t>& send_units = units.tokens_per_expert;
  std::vector<int64_t> send_choices(size_t(ranks), 0);
  for (int64_t k = 0; k < keys; ++k)
    send_choices[size_t(k / keys_per_destination)] += choices.tokens_per_expert[size_t(k)];
  const std::vector<int64_t> unit_offsets = exclusive_sum(send_units);

  // Each choice's unit, counted from its destination's first unit, and its id there: the
  // ids that travel beside the rows.
  const at::Tensor key_C = key_TK.reshape({-1}).index_select(0, choices.assignment_of_row_R);
  const at::Tensor rank_C = key_C.div(keys_per_destination, "floor");
  const at::Tensor unit_rank_U = rank_TK.reshape({-1}).index_select(0, units.assignment_of_row_R);
  at::Tensor unit_of_TP = at::zeros({tokens * ranks}, index);
  unit_of_TP.index_put_({units.token_of_row_R * ranks + unit_rank_U},
                        at::arange(units.token_of_row_R.size(0), index));
  const at::Tensor unit_C = unit_of_TP.index_select(0, choices.token_of_row_R * ranks + rank_C) -
                            host_to_tensor(unit_offsets, index).index_select(0, rank_C);
  std::vector<at::Tensor> ids = {unit_C, key_C - rank_C * keys_per_destination};
  if (token_T.defined()) ids.push_back(token_T.index_select(0, choices.token_of_row_R));
  const at::Tensor ids_C = at::stack(ids, 1);
  const at::Tensor weight_C =
      weights_TK.reshape({-1, 1}).index_select(0, choices.assignment_of_row_R);
  const at::Tensor x_UD = gather_rows(x_TD, units);

  std::vector<int64_t> counts(size_t(2 * ranks));  // per rank: units, choices
  for (int64_t p = 0; p < ranks; ++p) {
    counts[size_t(2 * p)] = send_units[size_t(p)];
    counts[size_t(2 * p + 1)] = send_choices[size_t(p)];
  }
  std::vector<int64_t> recv_units(static_cast<size_t>(ranks), 0);
  std::vector<int64_t> recv_choices(static_cast<size_t>(ranks), 0);
  {
    phase_clock::CollectiveScope collective(Phase::kCountExchange, comm);
    const std::vector<int64_t> received = comm.alltoall(counts);
    for (int64_t p = 0; p < ranks; ++p) {
      recv_units[size_t(p)] = received[size_t(2 * p)];
      recv_choices[size_t(p)] = received[size_t(2 * p + 1)];
    }
  }
  // Unpipelined, the rows go first, so that the work for their time in flight overlaps the
  // largest transfer; pipelined, the ids and weights go first (the receivers plan with them)
  // and the rows follow in pieces.
  at::Tensor x_VD;
  if (!pipelined)
    x_VD = exchange_keeping_own(x_UD, comm, send_units, recv_units,
                                {Phase::kDispatchRows, Phase::kSortPackRouteBwd}, while_in_flight);
  const at::Tensor ids_Q =
      exchange_keeping_own(ids_C, comm, send_choices, recv_choices, {Phase::kCountExchange, {}});
  const at::Tensor weight_Q = exchange_keeping_own(
      weight_C, comm, send_choices, recv_choices, {Phase::kDispatchRows, Phase::kSortPackRouteBwd});

  // Received: each choice's unit in the receive buffer (its source's first unit + the id).
  phase_clock::enter(Phase::kSortPack);
  const at::Tensor source_Q =
      at::repeat_interleave(at::arange(ranks, index), host_to_tensor(recv_choices, index));
  const at::Tensor unit_Q =
      ids_Q.select(1, 0) +
      host_to_tensor(exclusive_sum(recv_units), index).index_select(0, source_Q);
  const at::Tensor id_Q = ids_Q.select(1, 1);
  const at::Tensor token_Q = token_T.defined() ? ids_Q.select(1, 2) : at::Tensor();
  at::Tensor y_UD;
  if (pipelined) {
    y_UD = pipelined(x_UD, {send_units, recv_units, unit_Q, id_Q, weight_Q, token_Q});
  } else {
    const at::Tensor y_VD = work({x_VD, unit_Q, id_Q, weight_Q.reshape({-1}), token_Q});
    y_UD = exchange_keeping_own(y_VD, comm, recv_units, send_units,
                                {Phase::kCombineRows, Phase::kExpertsBwd});
  }
  // A token's partial sums, one per destination, added in the order of its first choice at
  // each.
  phase_clock::enter(Phase::kCombine);
  out.y_TD = combine_rows(y_UD, at::ones_like(weights_TK, y_UD.options()), units);

  out.received_rows = int64_t(ids_Q.size(0));
  out.sent_units = send_units;
  out.tokens_per_expert = std::move(choices.tokens_per_expert);
  out.extra_counts = std::move(choices.extra_counts);
  return out;
}

}  // namespace

TokenExchanged exchange_units(const at::Tensor& x_TD, const at::Tensor& key_TK,
                              int64_t keys_per_destination, const at::Tensor& keep_TK,
                              const at::Tensor& weights_TK, Communicator& comm,
                              const at::Tensor& extra_counts, const at::Tensor& token_T,
                              const InFlightWork& while_in_flight, const UnitWork& work) {
  return exchange_units_with(x_TD, key_TK, keys_per_destination, keep_TK, weights_TK, comm,
                             extra_counts, token_T, while_in_flight, work, {});
}

TokenExchanged experts_by_token_exchange(const at::Tensor& x_TD, const at::Tensor& experts_TK,
                                         const at::Tensor& keep_TK, const at::Tensor& weights_TK,
                                         int64_t num_experts, const Experts& experts,
                                         Communicator& ep, const at::Tensor& extra_counts,
                                         const at::Tensor& token_T, const RowDropout& dropout,
                                         const InFlightWork& while_in_flight, int64_t chunks) {
  const int64_t ranks = ep.size(), me = ep.rank();
  TRIAGE_ASSERT(num_experts % ranks == 0, num_experts << " experts over " << ranks << " ranks");
  const int64_t local_experts = num_experts / ranks;
  // A key is the global expert: its rank, then its local id there.
  TRIAGE_ASSERT(!dropout || token_T.defined(), "expert dropout needs each row's global token");
  auto keys_of = [&](const at::Tensor& token_Q, const at::Tensor& local_expert_Q,
                     const at::Tensor& choice_of_row) {
    return std::pair{token_Q.index_select(0, choice_of_row),
                     local_expert_Q.index_select(0, choice_of_row) + me * local_experts};
  };
  UnitWork local_experts_work = [&](const ReceivedUnits& r) {
    const ExpertOrder received = received_order(r.unit_Q, r.id_Q, r.x_VD.size(0), local_experts);
    const at::Tensor x_RD = gather_rows(r.x_VD, received);
    phase_clock::enter(Phase::kExperts);
    at::Tensor y_RD =
        experts.forward(x_RD, runs_per_expert(received.tokens_per_expert)).to(x_TD.scalar_type());
    if (dropout) {
      const auto [token_R, expert_R] = keys_of(r.token_Q, r.id_Q, received.assignment_of_row_R);
      y_RD = dropout(y_RD, token_R, expert_R);
    }
    phase_clock::enter(Phase::kCombine);
    return combine_rows(y_RD, r.weight_Q, received);
  };
  PipelinedUnits pipelined;
  if (chunks > 1)
    pipelined = [&](const at::Tensor& x_UD, const ReceivedChoices& received) {
      RowScale scale;
      if (dropout)
        scale = [&](const at::Tensor& choice_of_row_R) {
          const auto [token_R, expert_R] =
              keys_of(received.token_Q, received.local_expert_Q, choice_of_row_R);
          return dropout(at::ones({token_R.size(0), x_TD.size(1)}, x_TD.options()), token_R,
                         expert_R);
        };
      return run_token_pipeline(x_UD, received, experts.weights(x_TD.scalar_type()), ep, chunks,
                                experts.uses_grouped_gemm(x_UD), scale, while_in_flight,
                                experts.recompute());
    };
  return exchange_units_with(x_TD, experts_TK, local_experts, keep_TK, weights_TK, ep, extra_counts,
                             token_T, while_in_flight, local_experts_work, pipelined);
}

}  // namespace triage
