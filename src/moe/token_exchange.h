// One crossing per (token, destination rank) (moe.dispatch per_rank): a token travels once
// to each EP rank that holds any of its kept experts, with those choices' local expert ids
// and gate weights beside it; there its row fans out to the experts, the rank forms the
// gate-weighted sum of its experts' outputs for the token, and that one row travels back,
// where the token's partial sums (one per destination rank) are added. Bytes per token each
// way: distinct destination ranks x row bytes, plus 16 bytes of ids and one weight per
// choice (the per_choice exchange sends top_k rows).
//
// Every step is differentiable (row exchanges, gathers, the weighted sums), so gradients
// reach the input and the gate weights on their own ranks. Sums run in a fixed order (a
// token's choices on one rank by expert, then its partial sums by its choices' order),
// so a run repeats bit for bit; against one rank with all experts local it agrees to
// rounding, the sum being grouped by rank.
//
// exchange_units is the same exchange with the destination's work left open: the
// hierarchical exchange (host_exchange.h) runs it across hosts with, as the work, this
// exchange again on the destination's host.
//
// Legend: T local tokens, K choices, D width, E global experts, P ranks in the EP group,
// L = E / P local experts, U units (token, destination) sent, C choices sent; on the
// receiving side V units and Q choices received.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <vector>

#include "moe/experts.h"
#include "parallel/autograd_collectives.h"
#include "parallel/communicator.h"

namespace triage {

// Dropout of expert output rows keyed by each row's global token and global expert (the
// same mask on every layout); identity when empty.
using RowDropout = std::function<at::Tensor(const at::Tensor& y_RD, const at::Tensor& token_R,
                                            const at::Tensor& expert_R)>;

struct TokenExchanged {
  at::Tensor y_TD;                         // each token's gate-weighted sum of its experts
  std::vector<int64_t> tokens_per_expert;  // E: this rank's kept choices per global expert
  std::vector<int64_t> extra_counts;       // sort_by_expert's extra counts, on the host
  int64_t received_rows = 0;               // choices this rank's experts computed
  std::vector<int64_t> sent_units;         // rows sent to each rank (this one's own stay home)
};

// What a destination receives in a unit exchange: the units' rows (sources in rank order,
// its own included) and, for each received choice, its unit there, its id at the
// destination, its gate weight and, when tokens travel, its global token.
struct ReceivedUnits {
  at::Tensor x_VD;
  at::Tensor unit_Q, id_Q, weight_Q, token_Q;
};

// What a destination does with the units it received: each unit's gate-weighted sum of its
// choices' outputs (y_VD), differentiable in x_VD and weight_Q.
using UnitWork = std::function<at::Tensor(const ReceivedUnits&)>;

// The unit exchange both levels share: every choice has a key, destination rank x
// keys_per_destination + its id there; a token travels once to each destination of its kept
// choices, carrying those choices' ids and gate weights; `work` runs at the destination; one
// row per (token, destination) comes back and a token's rows are added in the order of its
// first choice at each. token_T: global token ids to carry beside the choices (undefined:
// none). tokens_per_expert holds this rank's kept choices per key. Collective over comm.
TokenExchanged exchange_units(const at::Tensor& x_TD, const at::Tensor& key_TK,
                              int64_t keys_per_destination, const at::Tensor& keep_TK,
                              const at::Tensor& weights_TK, Communicator& comm,
                              const at::Tensor& extra_counts, const at::Tensor& token_T,
                              const InFlightWork& while_in_flight, const UnitWork& work);

// token_T: each row's global token (int64), which keys the dropout; needed only with one.
// chunks > 1: the rows travel in that many pieces, pipelined with the experts
// (token_pipeline.h; either GEMM path).
TokenExchanged experts_by_token_exchange(
    const at::Tensor& x_TD, const at::Tensor& experts_TK, const at::Tensor& keep_TK,
    const at::Tensor& weights_TK, int64_t num_experts, const Experts& experts, Communicator& ep,
    const at::Tensor& extra_counts = {}, const at::Tensor& token_T = {},
    const RowDropout& dropout = {}, const InFlightWork& while_in_flight = {}, int64_t chunks = 1);

// The first kept choice of each (token, destination rank): true where no earlier kept
// choice of the token lives on the same rank. rank_TK: each choice's EP rank, of `ranks`.
at::Tensor first_choice_per_rank(const at::Tensor& rank_TK, const at::Tensor& keep_TK,
                                 int64_t ranks);

// Of these tokens, how many reach each of `ranks` EP ranks: those with a kept choice there,
// i.e. the rows per_rank sends each rank (int64 [ranks]). keep_TK empty: every choice.
at::Tensor tokens_reaching_rank(const at::Tensor& experts_TK, const at::Tensor& keep_TK,
                                int64_t experts_per_rank, int64_t ranks);

}  // namespace triage
