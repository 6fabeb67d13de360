// One Mixture-of-Experts layer on one rank: router -> capacity -> permute -> experts ->
// combine. Only the assignments routed to an expert are computed by it; dropped ones add
// zero. With an EP communicator, the exchange (dispatch / combine) carries the rows to the
// ranks that own their experts and back.
// Legend: T tokens, D model width, E experts, K choices per token.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "common/parameters.h"
#include "config/config.h"
#include "moe/aux_losses.h"
#include "moe/capacity.h"
#include "moe/experts.h"
#include "moe/host_exchange.h"
#include "moe/permute.h"
#include "moe/router.h"
#include "parallel/autograd_collectives.h"
#include "parallel/communicator.h"

namespace triage {

// What one forward call saw; the trainer logs it every step.
struct MoeStats {
  std::vector<int64_t> tokens_per_expert;  // this rank's kept assignments, per global expert
  int64_t assignments = 0;                 // T * K routed
  int64_t dropped = 0;                     // over capacity
  int64_t capacity = kDropless;            // per expert; kDropless when no limit
  int64_t row_bytes = 0;                   // one exchanged row: width x the experts' dtype
  // moe.max_receive_factor: assignments this rank dropped because their destination EP
  // rank (index p) was at its bound, and the bound in rows per source rank.
  std::vector<int64_t> bound_dropped_per_rank;
  int64_t receive_quota = kDropless;
  // Rows this rank's experts took in, from every source rank: with data parallelism under
  // expert choice one replica may take far more than its share while the loads look even.
  int64_t received_rows = 0;
  // Rows this rank's exchange sent (moe.dispatch per_rank: one per token and destination
  // rank; per_choice: one per kept choice), and of those, the rows for other ranks: what
  // crosses a link, each way.
  int64_t sent_rows = 0, sent_rows_to_others = 0;
  std::vector<int64_t> sent_rows_per_rank;  // the same, by destination EP rank
};

struct MoeOutput {
  at::Tensor y;             // same shape as the input
  at::Tensor balance_loss;  // alpha-scaled, scalar
  at::Tensor z_loss;        // beta-scaled, scalar
  // The router's rows: tokens, or sequences under routing_level sequence; expert choice
  // fills experts_TK with all E experts, the row's favourite first.
  RouterOutput routing;
  at::Tensor keep_TK;       // bool, per routing row: which assignments fitted (were taken)
  at::Tensor top_expert_T;  // each token's first-choice expert (its sequence's, if routed so)
  MoeStats stats;
};

// Whether the layer sends one row per (token, destination rank) (moe.dispatch per_rank, or
// auto off the GPU) rather than one per choice.
bool dispatches_per_rank(const MoeConfig& config, bool on_gpu);

class MoeLayer {
 public:
  // ep == nullptr: every expert is local (the one-rank reference). Otherwise this rank
  // holds num_experts / ep->size() experts, from ep->rank() * that, and tokens travel
  // through the exchange. The gate is seeded by `seed`, each expert by (seed, its id).
  // balance_group: the ranks whose batches the global balance loss covers (the trainer
  // passes the world, so the loss is the whole global batch's); nullptr means ep.
  // reference_ep_size: for the reference (ep == nullptr) only, the EP size whose layout the
  // rules that name ranks (routing_override empty_rank, max_receive_factor) assume.
  MoeLayer(const MoeConfig& config, int64_t d_model, at::ScalarType dtype, uint64_t seed,
           Communicator* ep = nullptr, Communicator* balance_group = nullptr,
           int64_t reference_ep_size = 1);

  // x: [..., D] ([B, L, D] for routing_level sequence or balance_loss_scope sequence).
  // training picks capacity_factor vs eval_capacity_factor and enables noise.
  // first_token: the global index of x's first token, which keys routing overrides and
  // noise to the token, not to the layout. real_BL: 1 for real tokens, 0 for padding
  // (undefined: all real); sequence routing averages real tokens only, and neither it nor
  // expert choice sends padding to an expert. independent_work: work that does not need
  // this layer's output (the block's shared experts); it runs exactly once, while the
  // dispatched rows travel (at once without an exchange), with autograd as at the call.
  MoeOutput forward(const at::Tensor& x, bool training, int64_t first_token = 0,
                    const at::Tensor& real_BL = {}, const InFlightWork& independent_work = {});

  // The (optimizer step, micro-batch) that keys the training noise and expert dropout; the
  // step is also the recorded step moe.routing_override replay:RUN_DIR draws from next.
  void set_draw_clock(int64_t step, int64_t micro_batch = 0) {
    routing_step_ = step;
    micro_batch_ = micro_batch;
  }

  Router& router() { return router_; }
  const Experts& experts() const { return experts_; }
  // train.recompute experts (see Experts::set_recompute).
  void set_recompute_experts(bool recompute) { experts_.set_recompute(recompute); }
  const MoeConfig& config() const { return config_; }
  ParameterList parameters() const;
  // The router's expert bias, under the name checkpoints use. (Noise needs no state: its
  // draws are keyed by step and token; checkpoints before it held a router_rng, ignored.)
  BufferList buffers() const { return router_.buffers(); }

  // Aux-loss-free balancing (moe.expert_bias), once per optimizer step with the whole
  // world's kept assignments per expert, so that every rank moves the bias alike.
  void update_expert_bias(const at::Tensor& tokens_per_expert_E) {
    router_.update_expert_bias(tokens_per_expert_E);
  }

 private:
  // What routing decided, per token (a sequence's tokens share its row's choice).
  struct Routes {
    at::Tensor real_T;      // bool per token, undefined when all are real
    at::Tensor eligible_R;  // bool per router row an expert may take, undefined for all
    at::Tensor experts_TK, weights_TK, keep_TK;
    int64_t capacity = kDropless;
    at::Tensor extra_counts;  // read back with the counts (see route())
    bool count_real = false;  // extra_counts ends with the real tokens' assignments
    bool global = false;      // the balance loss over balance_group_
  };

  // The steps of forward(), in order.
  Routes route(const at::Tensor& x, bool training, int64_t first_token, const at::Tensor& real_BL,
               MoeOutput& out);
  void choose_by_experts_in_slices(double factor, Routes& routes, MoeOutput& out,
                                   at::ScalarType dtype) const;
  void choose_by_tokens(double factor, int64_t first_row, Routes& routes, MoeOutput& out,
                        at::ScalarType dtype) const;
  at::Tensor expert_rows(const at::Tensor& x_TD, MoeStats& stats) const;
  // Dispatch -> experts -> combine; out.y as [tokens, D]. Returns the extra counts read back.
  std::vector<int64_t> experts_across_ranks(const at::Tensor& x_TD, const Routes& routes,
                                            bool training, int64_t first_token,
                                            const InFlightWork& independent_work, MoeOutput& out);
  std::vector<int64_t> experts_on_this_rank(const at::Tensor& x_TD, const Routes& routes,
                                            bool training, int64_t first_token,
                                            const InFlightWork& independent_work, MoeOutput& out);
  void count(const Routes& routes, int64_t tokens, const std::vector<int64_t>& extra_host,
             MoeStats& stats) const;
  // moe.expert_dropout on expert output rows, each keyed by its global token and expert.
  at::Tensor dropout_rows(const at::Tensor& y_RD, const at::Tensor& token_R,
                          const at::Tensor& expert_R) const;
  // moe.expert_dropout on the expert output rows (in `order`), while training.
  at::Tensor expert_dropout(const at::Tensor& y_RD, const ExpertOrder& order,
                            const at::Tensor& experts_TK, int64_t first_token) const;
  // The balance loss the config asks for, over the router's real rows (real_R; `sequences`
  // of them in x's first dimension for the sequence-wise loss, whose tokens real_T marks),
  // all-reduced under `global`. Undefined masks: every row is real.
  at::Tensor aux_balance_loss(const RouterOutput& routing, bool training, int64_t sequences,
                              bool global, const at::Tensor& real_R, const at::Tensor& real_T);

  MoeConfig config_;
  uint64_t seed_;
  int64_t routing_step_ = 0;
  int64_t micro_batch_ = 0;
  int64_t ep_size_;  // ranks the experts are spread over (1 for the plain reference)
  Communicator* ep_;
  std::optional<ExchangeChoice> exchange_;  // moe.exchange resolved, at the first exchange
  Communicator* balance_group_;
  Router router_;
  Experts experts_;
};

}  // namespace triage
