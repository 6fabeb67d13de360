// Wires router, capacity, permutation, experts and losses into one layer call.
#include "moe/moe_layer.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>

#include "common/counter_random.h"
#include "common/error.h"
#include "moe/exchange.h"
#include "moe/expert_choice.h"
#include "moe/host_exchange.h"
#include "moe/permute.h"
#include "moe/routing_override.h"
#include "moe/token_exchange.h"
#include "parallel/phase_clock.h"

namespace triage {

namespace {
constexpr uint64_t kExpertDropoutStream = 3;  // beside the router's noise streams (1, 2)

// The dtype the experts compute in: autocast's, while it is on for x's device and x is a
// float32 activation; else x's own.
at::ScalarType expert_dtype(const at::Tensor& x) {
  const c10::DeviceType device = x.device().type();
  if (x.scalar_type() == at::kFloat && at::autocast::is_autocast_enabled(device))
    return at::autocast::get_autocast_dtype(device);
  return x.scalar_type();
}

int64_t local_experts(const MoeConfig& config, Communicator* ep) {
  return ep ? config.num_experts / ep->size() : config.num_experts;
}
}  // namespace

MoeLayer::MoeLayer(const MoeConfig& config, int64_t d_model, at::ScalarType dtype, uint64_t seed,
                   Communicator* ep, Communicator* balance_group, int64_t reference_ep_size)
    : config_(config),
      seed_(seed),
      ep_size_(ep ? ep->size() : reference_ep_size),
      ep_(ep),
      balance_group_(balance_group ? balance_group : ep),
      router_(config, d_model, dtype, at::make_generator<at::CPUGeneratorImpl>(seed),
              std::max<int64_t>(1, config.num_groups)),
      experts_(ep ? ep->rank() * local_experts(config, ep) : 0, local_experts(config, ep), d_model,
               config.d_expert, config.expert_type, dtype, seed, config.expert_gemm) {
  // A layer's routing is its model's, whatever the layout it runs on (load_config resolves
  // num_groups 0 to the stated EP size).
  TRIAGE_ASSERT(config.topk_groups == 0 || config.num_groups > 0,
                "moe.topk_groups " << config.topk_groups
                                   << " with moe.num_groups 0: resolve it to a number first");
  // Replay's loads are read once per run by the trainer; a layer built on its own reads them.
  RoutingOverride& routing = config_.routing_override;
  if (routing.kind == RoutingOverride::Kind::kReplay && !routing.replay_loads)
    routing.replay_loads = std::make_shared<const std::vector<std::vector<double>>>(
        load_replay_loads(routing.run_dir, config.num_experts));
}

// The layer's steps, in order: route (the router's rows, scores and choice, capacity),
// then dispatch -> experts -> combine (across the EP group, or all on this rank), then
// the router's auxiliary losses and the statistics.
MoeOutput MoeLayer::forward(const at::Tensor& x, bool training, int64_t first_token,
                            const at::Tensor& real_BL, const InFlightWork& independent_work) {
  TRIAGE_ASSERT(config_.routing_level != RoutingLevel::kSequence || x.dim() == 3,
                "moe.routing_level sequence needs [sequences, length, D] input; got " << x.sizes());
  const std::optional<Phase> outer_phase = phase_clock::current();
  MoeOutput out;
  const Routes routes = route(x, training, first_token, real_BL, out);
  const at::Tensor x_TD = x.reshape({-1, x.size(-1)});
  const std::vector<int64_t> extra_host =
      ep_ ? experts_across_ranks(x_TD, routes, training, first_token, independent_work, out)
          : experts_on_this_rank(x_TD, routes, training, first_token, independent_work, out);
  out.y = out.y.view(x.sizes());

  phase_clock::enter(Phase::kRoute);  // the auxiliary losses are the router's, over its rows
  // Over the real rows only: padding never reaches the router's statistics.
  out.balance_loss = aux_balance_loss(out.routing, training, x.dim() == 3 ? x.size(0) : 0,
                                      routes.global, routes.eligible_R, routes.real_T);
  out.z_loss = z_loss(out.routing.logits_TE, config_.z_loss_coef, routes.eligible_R);
  count(routes, x_TD.size(0), extra_host, out.stats);
  phase_clock::resume(outer_phase);
  return out;
}

MoeLayer::Routes MoeLayer::route(const at::Tensor& x, bool training, int64_t first_token,
                                 const at::Tensor& real_BL, MoeOutput& out) {
  phase_clock::enter(Phase::kRoute);
  const at::Tensor x_TD = x.reshape({-1, x.size(-1)});
  const bool by_sequence = config_.routing_level == RoutingLevel::kSequence;
  Routes routes;
  routes.real_T = real_BL.defined() ? real_BL.reshape({-1}).to(at::kBool) : at::Tensor();
  routes.global = balance_group_ && config_.balance_loss_mode == BalanceLossMode::kGlobal;
  // The router's rows: tokens, or each sequence's mean over its real tokens.
  const int64_t length = by_sequence ? x.size(1) : 1;  // tokens per row
  at::Tensor rows_RD = x_TD;
  if (by_sequence) {
    const at::Tensor real_BL1 = real_BL.defined() ? real_BL.to(x.scalar_type()).unsqueeze(-1)
                                                  : at::ones({x.size(0), length, 1}, x.options());
    rows_RD = (x * real_BL1).sum(1) / real_BL1.sum(1).clamp_min(1.0);
    if (routes.real_T.defined()) routes.eligible_R = routes.real_T.view({x.size(0), length}).any(1);
  } else {
    routes.eligible_R = routes.real_T;
  }
  const int64_t first_row = first_token / length;
  const NoiseDraw draw{random_key({seed_, uint64_t(routing_step_), uint64_t(micro_batch_)}),
                       first_row};
  out.routing = router_.forward(rows_RD, training, draw);
  const double factor = training ? config_.capacity_factor : config_.eval_capacity_factor;
  if (config_.router == RouterKind::kExpertChoice)
    choose_by_experts_in_slices(factor, routes, out, x_TD.scalar_type());
  else
    choose_by_tokens(factor, first_row, routes, out, x_TD.scalar_type());

  // From rows to tokens: a sequence's tokens share its experts, weights and fate.
  const RouterOutput& r = out.routing;
  routes.experts_TK = r.experts_TK;
  routes.weights_TK = r.weights_TK;
  routes.keep_TK = out.keep_TK;
  if (by_sequence) {
    routes.experts_TK = routes.experts_TK.repeat_interleave(length, 0);
    routes.weights_TK = routes.weights_TK.repeat_interleave(length, 0);
    routes.keep_TK = routes.keep_TK.repeat_interleave(length, 0);
  }
  if (routes.real_T.defined()) routes.keep_TK = routes.keep_TK & routes.real_T.unsqueeze(1);
  out.top_expert_T = routes.experts_TK.select(1, 0);
  // Statistics the host needs from the device ride in the per-expert counts' one copy
  // (sort_by_expert's extra_counts): the receive bound's drops per rank, when it is on,
  // then the real tokens' assignments, under sequence routing with padding.
  std::vector<at::Tensor> extra;
  if (config_.router != RouterKind::kExpertChoice) {  // expert choice's C bounds it
    const int64_t tokens = x_TD.size(0);
    out.stats.receive_quota =
        receive_quota(config_.max_receive_factor, tokens, config_.top_k, ep_size_);
    at::Tensor dropped_P;
    routes.keep_TK =
        receive_bound_keep_mask(routes.experts_TK, routes.keep_TK, config_.num_experts / ep_size_,
                                ep_size_, out.stats.receive_quota, dropped_P);
    if (out.stats.receive_quota != kDropless) extra.push_back(dropped_P);
    routes.count_real = routes.real_T.defined();
    if (routes.count_real) extra.push_back((routes.real_T.sum() * config_.top_k).reshape({1}));
  }
  if (!extra.empty()) routes.extra_counts = at::cat(extra);
  return routes;
}

// Expert choice is never dropless: C comes from the factor (1 when 0), over the rows of
// one slice of the global batch, chosen slice by slice.
void MoeLayer::choose_by_experts_in_slices(double factor, Routes& routes, MoeOutput& out,
                                           at::ScalarType dtype) const {
  RouterOutput& r = out.routing;
  const int64_t rows = r.scores_TE.size(0), num_experts = config_.num_experts;
  const int64_t world = balance_group_ ? balance_group_->size() : 1;
  const ExpertChoiceSlices plan =
      expert_choice_slices(config_.expert_choice_slices, world, ep_size_);
  Communicator* group = plan.span == 1 ? nullptr : plan.span == world ? balance_group_ : ep_;
  if (rows % plan.per_rank != 0)
    throw Error("moe.expert_choice_slices: " + std::to_string(rows) +
                " rows on this rank cannot be cut into " + std::to_string(plan.per_rank) +
                " equal slices; expected a batch of whole slices");
  const int64_t slice_rows = rows / plan.per_rank, group_rows = slice_rows * plan.span;
  routes.capacity =
      std::min(group_rows, expert_capacity(factor > 0 ? factor : 1.0, group_rows, config_.top_k,
                                           num_experts, config_.min_capacity));
  std::vector<at::Tensor> experts, taken;
  for (int64_t first = 0; first < rows; first += slice_rows) {
    const ExpertChoice choice = choose_by_experts(
        r.scores_TE.narrow(0, first, slice_rows),
        routes.eligible_R.defined() ? routes.eligible_R.narrow(0, first, slice_rows) : at::Tensor(),
        routes.capacity, group);
    experts.push_back(choice.experts_RE);
    taken.push_back(choice.taken_RE);
  }
  r.experts_TK = at::cat(experts);
  out.keep_TK = at::cat(taken);
  // Weighted by the raw scores (no renormalisation over a row's experts, as in the paper).
  r.weights_TK = (r.scores_TE.gather(1, r.experts_TK) * config_.route_scale).to(dtype);
}

// Token choice: the router's top-k (or the routing override's), then each expert's capacity.
void MoeLayer::choose_by_tokens(double factor, int64_t first_row, Routes& routes, MoeOutput& out,
                                at::ScalarType dtype) const {
  RouterOutput& r = out.routing;
  const int64_t rows = r.scores_TE.size(0), num_experts = config_.num_experts;
  if (config_.routing_override.kind != RoutingOverride::Kind::kNone) {
    r.experts_TK = override_routing(config_.routing_override, r.experts_TK, r.scores_TE, first_row,
                                    seed_, num_experts / ep_size_, routing_step_);
    r.weights_TK = router_.gate_weights(r.scores_TE, r.experts_TK, dtype);
  }
  routes.capacity = expert_capacity(factor, rows, config_.top_k, num_experts, config_.min_capacity);
  // Padding is never kept: it takes no place in an expert's capacity and never travels.
  out.keep_TK = capacity_keep_mask(r.experts_TK, r.scores_TE.gather(1, r.experts_TK), num_experts,
                                   routes.capacity, config_.drop_policy, routes.eligible_R);
}

// Under autocast (train.precision bf16) the experts compute in its dtype: the rows are
// cast once here, so they travel in it too (half float32's bytes), and each expert
// matrix is cast once per optimizer step (Experts::weights). The outputs are combined in
// the model's dtype, with the float32 gate weights.
at::Tensor MoeLayer::expert_rows(const at::Tensor& x_TD, MoeStats& stats) const {
  const at::Tensor rows_TD = x_TD.to(expert_dtype(x_TD));
  stats.row_bytes = rows_TD.element_size() * x_TD.size(1);
  return rows_TD;
}

bool dispatches_per_rank(const MoeConfig& config, bool on_gpu) {
  // auto keeps per_choice on a GPU: per_rank reads three counts back to the host per forward
  // where per_choice reads one (merging them is still to do).
  return config.dispatch == Dispatch::kPerRank || (config.dispatch == Dispatch::kAuto && !on_gpu);
}

std::vector<int64_t> MoeLayer::experts_across_ranks(const at::Tensor& x_TD, const Routes& routes,
                                                    bool training, int64_t first_token,
                                                    const InFlightWork& independent_work,
                                                    MoeOutput& out) {
  MoeStats& s = out.stats;
  if (!exchange_) exchange_ = choose_exchange(config_.exchange, *ep_, x_TD.is_cuda());
  if (exchange_->hierarchical || dispatches_per_rank(config_, x_TD.is_cuda())) {
    RowDropout dropout;
    at::Tensor token_T;  // the dropout's keys
    if (training && config_.expert_dropout > 0) {
      token_T = at::arange(x_TD.size(0), routes.experts_TK.options()) + first_token;
      dropout = [this](const at::Tensor& y_RD, const at::Tensor& token_R,
                       const at::Tensor& expert_R) {
        return dropout_rows(y_RD, token_R, expert_R);
      };
    }
    TokenExchanged exchanged =
        exchange_->hierarchical
            ? experts_by_host_exchange(expert_rows(x_TD, s), routes.experts_TK, routes.keep_TK,
                                       routes.weights_TK, config_.num_experts, experts_,
                                       ep_->host_levels(), routes.extra_counts, token_T, dropout,
                                       independent_work, config_.exchange_chunks)
            : experts_by_token_exchange(expert_rows(x_TD, s), routes.experts_TK, routes.keep_TK,
                                        routes.weights_TK, config_.num_experts, experts_, *ep_,
                                        routes.extra_counts, token_T, dropout, independent_work,
                                        config_.exchange_chunks);
    out.y = exchanged.y_TD;
    s.received_rows = exchanged.received_rows;
    s.sent_rows_per_rank = std::move(exchanged.sent_units);
    s.tokens_per_expert = std::move(exchanged.tokens_per_expert);
    return std::move(exchanged.extra_counts);
  }
  Dispatched sent =
      dispatch(expert_rows(x_TD, s), routes.experts_TK, routes.keep_TK, config_.num_experts, *ep_,
               config_.exchange_chunks, routes.extra_counts);
  at::Tensor y_RD =
      expert_outputs(sent.x_RD, sent.plan, experts_, *ep_, independent_work).to(x_TD.scalar_type());
  if (training) y_RD = expert_dropout(y_RD, sent.plan.order, routes.experts_TK, first_token);
  out.y = combine(y_RD, routes.weights_TK, sent.plan);
  for (int64_t rows_from : sent.plan.recv_rows) s.received_rows += rows_from;
  s.sent_rows_per_rank = sent.plan.send_rows;
  s.tokens_per_expert = std::move(sent.plan.order.tokens_per_expert);
  return std::move(sent.plan.order.extra_counts);
}

std::vector<int64_t> MoeLayer::experts_on_this_rank(const at::Tensor& x_TD, const Routes& routes,
                                                    bool training, int64_t first_token,
                                                    const InFlightWork& independent_work,
                                                    MoeOutput& out) {
  MoeStats& s = out.stats;
  const at::Tensor rows_TD = expert_rows(x_TD, s);
  ExpertOrder order =
      sort_by_expert(routes.experts_TK, routes.keep_TK, config_.num_experts, routes.extra_counts);
  if (independent_work) independent_work();  // nothing travels: no overlap to be had
  phase_clock::enter(Phase::kExperts);
  at::Tensor y_RD =
      experts_.forward(gather_rows(rows_TD, order), runs_per_expert(order.tokens_per_expert))
          .to(x_TD.scalar_type());
  if (training) y_RD = expert_dropout(y_RD, order, routes.experts_TK, first_token);
  out.y = combine_rows(y_RD, routes.weights_TK, order);
  s.tokens_per_expert = std::move(order.tokens_per_expert);
  return std::move(order.extra_counts);
}

void MoeLayer::count(const Routes& routes, int64_t tokens, const std::vector<int64_t>& extra_host,
                     MoeStats& s) const {
  s.bound_dropped_per_rank.assign(size_t(ep_size_), 0);
  if (s.receive_quota != kDropless)
    std::copy(extra_host.begin(), extra_host.begin() + ep_size_, s.bound_dropped_per_rank.begin());
  int64_t kept = 0;
  for (int64_t n : s.tokens_per_expert) kept += n;
  // Expert choice has no per-token budget to fall short of: what the experts took is all.
  if (config_.router == RouterKind::kExpertChoice)
    s.assignments = kept;
  else if (routes.count_real)
    s.assignments = extra_host.back();
  else
    s.assignments = tokens * config_.top_k;
  s.capacity = routes.capacity;
  s.dropped = s.assignments - kept;
  if (!ep_) s.received_rows = kept;
  for (int64_t rows : s.sent_rows_per_rank) s.sent_rows += rows;
  if (ep_) s.sent_rows_to_others = s.sent_rows - s.sent_rows_per_rank[size_t(ep_->rank())];
}

at::Tensor MoeLayer::expert_dropout(const at::Tensor& y_RD, const ExpertOrder& order,
                                    const at::Tensor& experts_TK, int64_t first_token) const {
  if (config_.expert_dropout == 0) return y_RD;
  const at::Tensor expert_R = experts_TK.reshape({-1}).index_select(0, order.assignment_of_row_R);
  return dropout_rows(y_RD, order.token_of_row_R + first_token, expert_R);
}

at::Tensor MoeLayer::dropout_rows(const at::Tensor& y_RD, const at::Tensor& token_R,
                                  const at::Tensor& expert_R) const {
  // Each row's mask is keyed by (global token, expert, unit): the same on every layout.
  const at::Tensor row_key_R = token_R * config_.num_experts + expert_R;
  const int64_t width = y_RD.size(1);
  const at::Tensor counters =
      row_key_R.unsqueeze(1) * width + at::arange(width, row_key_R.options()).unsqueeze(0);
  const uint64_t key =
      random_key({seed_, uint64_t(routing_step_), uint64_t(micro_batch_), kExpertDropoutStream});
  return keyed_dropout(y_RD, config_.expert_dropout, key, counters);
}

at::Tensor MoeLayer::aux_balance_loss(const RouterOutput& r, bool training, int64_t sequences,
                                      bool global, const at::Tensor& real_R,
                                      const at::Tensor& real_T) {
  // Expert choice fills every expert by construction; Shazeer's losses need the noise,
  // which is drawn in training only.
  if (config_.router == RouterKind::kExpertChoice ||
      (config_.balance_loss_type == BalanceLossType::kCvSquared && !training))
    return at::zeros({}, r.scores_TE.options());
  if (config_.balance_loss_type == BalanceLossType::kCvSquared) {
    ImportanceLoad sums = importance_load(r.weights_TK, r.experts_TK, r.logits_TE,
                                          r.clean_logits_TE, r.noise_std_TE, real_R);
    if (global) sums = all_reduce(sums, *balance_group_);
    return cv_squared_loss(sums, config_.balance_loss_coef);
  }
  if (config_.balance_loss_scope == BalanceLossScope::kSequence) {
    TRIAGE_ASSERT(sequences > 0,
                  "moe.balance_loss_scope sequence needs [sequences, length, D] input");
    SequenceBalance balance =
        sequence_balance(r.scores_TE, r.experts_TK, sequences, config_.balance_loss_coef, real_T);
    if (global) balance = all_reduce(balance, *balance_group_);
    return balance_loss(balance);
  }
  BalanceStats balance = balance_stats(r.scores_TE, r.experts_TK, real_R);
  if (global) balance = all_reduce(balance, *balance_group_);
  return balance_loss(balance, config_.balance_loss_coef);
}

ParameterList MoeLayer::parameters() const {
  ParameterList params;
  append_parameters(params, "router", router_.parameters());
  append_parameters(params, "experts", experts_.parameters());
  return params;
}

}  // namespace triage
