// Wires router, capacity, permutation, experts and losses into one layer call.
#include "moe/moe_layer.h"

#include <algorithm>

#include <ATen/CPUGeneratorImpl.h>

#include "moe/exchange.h"
#include "moe/permute.h"
#include "moe/routing_override.h"
#include "parallel/phase_clock.h"

namespace triage {

namespace {
int64_t local_experts(const MoeConfig& config, Communicator* ep) {
  return ep ? config.num_experts / ep->size() : config.num_experts;
}
}  // namespace

MoeLayer::MoeLayer(const MoeConfig& config, int64_t d_model, at::ScalarType dtype, uint64_t seed,
                   Communicator* ep, Communicator* balance_group, int64_t reference_ep_size)
    : config_(config),
      routing_override_(parse_routing_override(config.routing_override)),
      seed_(seed),
      ep_size_(ep ? ep->size() : reference_ep_size),
      ep_(ep),
      balance_group_(balance_group ? balance_group : ep),
      router_(config, d_model, dtype, at::make_generator<at::CPUGeneratorImpl>(seed),
              config.num_groups > 0 ? config.num_groups : ep_size_),
      experts_(ep ? ep->rank() * local_experts(config, ep) : 0, local_experts(config, ep), d_model,
               config.d_expert, config.expert_type, dtype, seed, config.expert_gemm) {
  if (routing_override_.kind == RoutingOverride::Kind::kReplay)
    routing_override_.replay_loads =
        load_replay_loads(routing_override_.run_dir, config.num_experts);
}

MoeOutput MoeLayer::forward(const at::Tensor& x, bool training, int64_t first_token) {
  const int64_t d_model = x.size(-1);
  at::Tensor x_TD = x.reshape({-1, d_model});
  const int64_t tokens = x_TD.size(0);
  const int64_t num_experts = config_.num_experts;

  MoeOutput out;
  const std::string outer_phase = phase_clock::current();
  phase_clock::enter("route");
  out.routing = router_.forward(x_TD, training);
  RouterOutput& r = out.routing;
  if (routing_override_.kind != RoutingOverride::Kind::kNone) {
    r.experts_TK = override_routing(routing_override_, r.experts_TK, r.scores_TE, first_token,
                                    seed_, num_experts / ep_size_, routing_step_);
    r.weights_TK = router_.gate_weights(r.scores_TE, r.experts_TK, x_TD.scalar_type());
  }

  const double factor = training ? config_.capacity_factor : config_.eval_capacity_factor;
  const int64_t capacity =
      expert_capacity(factor, tokens, config_.top_k, num_experts, config_.min_capacity);
  at::Tensor scores_TK = r.scores_TE.gather(1, r.experts_TK);
  out.keep_TK =
      capacity_keep_mask(r.experts_TK, scores_TK, num_experts, capacity, config_.drop_policy);
  MoeStats& s = out.stats;
  s.receive_quota = receive_quota(config_.max_receive_factor, tokens, config_.top_k, ep_size_);
  out.keep_TK = receive_bound_keep_mask(r.experts_TK, out.keep_TK, num_experts / ep_size_, ep_size_,
                                        s.receive_quota, s.bound_dropped_per_rank);

  if (ep_) {
    Dispatched sent =
        dispatch(x_TD, r.experts_TK, out.keep_TK, num_experts, *ep_, config_.exchange_chunks);
    at::Tensor y_RD = expert_outputs(sent.x_RD, sent.plan, experts_, *ep_);
    out.y = combine(y_RD, r.weights_TK, sent.plan).view(x.sizes());
    s.tokens_per_expert = std::move(sent.plan.order.tokens_per_expert);
  } else {
    ExpertOrder order = sort_by_expert(r.experts_TK, out.keep_TK, num_experts);
    phase_clock::enter("experts");
    at::Tensor y_RD =
        experts_.forward(gather_rows(x_TD, order), runs_per_expert(order.tokens_per_expert));
    out.y = combine_rows(y_RD, r.weights_TK, order).view(x.sizes());
    s.tokens_per_expert = std::move(order.tokens_per_expert);
  }

  phase_clock::enter("route");  // the auxiliary losses are the router's
  const bool global = balance_group_ && config_.balance_loss_mode == BalanceLossMode::kGlobal;
  if (config_.balance_loss_scope == BalanceLossScope::kSequence) {
    TRIAGE_ASSERT(x.dim() == 3,
                  "moe.balance_loss_scope sequence needs [sequences, length, D] "
                  "input; got "
                      << x.sizes());
    SequenceBalance balance =
        sequence_balance(r.scores_TE, r.experts_TK, x.size(0), config_.balance_loss_coef);
    if (global) balance = all_reduce(balance, *balance_group_);
    out.balance_loss = balance_loss(balance);
  } else {
    BalanceStats balance = balance_stats(r.scores_TE, r.experts_TK);
    if (global) balance = all_reduce(balance, *balance_group_);
    out.balance_loss = balance_loss(balance, config_.balance_loss_coef);
  }
  out.z_loss = z_loss(r.logits_TE, config_.z_loss_coef);

  s.assignments = tokens * config_.top_k;
  s.capacity = capacity;
  int64_t kept = 0;
  for (int64_t n : s.tokens_per_expert) kept += n;
  s.dropped = s.assignments - kept;
  s.max_load = double(*std::max_element(s.tokens_per_expert.begin(), s.tokens_per_expert.end()));
  s.mean_load = double(kept) / double(num_experts);
  phase_clock::enter(outer_phase);
  return out;
}

ParameterList MoeLayer::parameters() const {
  ParameterList params;
  append_parameters(params, "router", router_.parameters());
  append_parameters(params, "experts", experts_.parameters());
  return params;
}

}  // namespace triage
