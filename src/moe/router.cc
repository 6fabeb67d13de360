// Router: scoring, top-k choice, renormalisation and the DeepSeek-V3 selection bias.
#include "moe/router.h"

#include <c10/core/impl/LocalDispatchKeySet.h>

#include <cmath>
#include <limits>

#include <c10/core/GradMode.h>

#include "common/counter_random.h"
#include "common/error.h"

namespace triage {

namespace {
// Purposes of a layer's noise stream, so that jitter and Shazeer noise never share draws.
constexpr uint64_t kJitterStream = 1, kShazeerStream = 2;

at::ScalarType router_dtype(at::ScalarType model_dtype) {
  return model_dtype == at::kDouble ? at::kDouble : at::kFloat;
}
}  // namespace

Router::Router(const MoeConfig& config, int64_t d_model, at::ScalarType dtype,
               at::Generator generator, int64_t num_groups)
    : config_(config), num_groups_(num_groups) {
  TRIAGE_ASSERT(config.topk_groups == 0 || config.num_experts % num_groups == 0,
                num_groups << " expert groups do not divide " << config.num_experts << " experts");
  const auto gate_dtype = router_dtype(dtype);
  gate_ED_ = normal_parameter({config.num_experts, d_model}, 1.0 / std::sqrt(double(d_model)),
                              gate_dtype, generator);
  expert_bias_E_ = at::zeros({config.num_experts}, at::TensorOptions().dtype(gate_dtype));
  if (config.noise == RouterNoise::kShazeer)
    noise_gate_ED_ = at::zeros({config.num_experts, d_model}, at::TensorOptions().dtype(gate_dtype))
                         .set_requires_grad(true);
}

ParameterList Router::parameters() const {
  ParameterList params{{"gate", gate_ED_}};
  if (noise_gate_ED_.defined()) params.push_back({"noise_gate", noise_gate_ED_});
  return params;
}

at::Tensor within_best_groups(const at::Tensor& selection_TE, int64_t groups, int64_t best) {
  const int64_t tokens = selection_TE.size(0), per_group = selection_TE.size(1) / groups;
  const at::Tensor selection_TGM = selection_TE.view({tokens, groups, per_group});
  const at::Tensor group_score_TG =
      std::get<0>(selection_TGM.topk(std::min<int64_t>(2, per_group), -1)).sum(-1);
  const at::Tensor best_TB = std::get<1>(group_score_TG.topk(best, -1));
  const at::Tensor kept_TG = at::zeros({tokens, groups}, selection_TE.options().dtype(at::kBool))
                                 .scatter_(1, best_TB, true);
  return selection_TGM.masked_fill(~kept_TG.unsqueeze(-1), -std::numeric_limits<double>::infinity())
      .view({tokens, groups * per_group});
}

RouterOutput Router::forward(const at::Tensor& x_TD, bool training, NoiseDraw draw) {
  TRIAGE_ASSERT(x_TD.dim() == 2 && x_TD.size(1) == gate_ED_.size(1),
                "router input " << x_TD.sizes() << " does not match gate " << gate_ED_.sizes());
  // The router stays in float32 under bf16 autocast: top-k and the softmax are sensitive to
  // rounding (the "fp32 router" of Switch and Megatron).
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const int64_t rows = x_TD.size(0), width = x_TD.size(1), experts = gate_ED_.size(0);
  at::Tensor gate_input = x_TD.to(gate_ED_.scalar_type());
  if (training && config_.noise == RouterNoise::kJitter) {
    // Switch Transformer jitter: multiplicative noise on the router's input only.
    const double eps = config_.jitter_noise;
    const at::Tensor noise =
        counter_uniform(random_key({draw.key, kJitterStream}),
                        block_counters(draw.first_row, rows, width, gate_input.device()));
    gate_input = gate_input * (noise * (2 * eps) + (1 - eps)).to(gate_input.scalar_type());
  }
  RouterOutput out;
  out.logits_TE = at::matmul(gate_input, gate_ED_.t());
  if (training && config_.noise == RouterNoise::kShazeer) {
    out.clean_logits_TE = out.logits_TE;
    out.noise_std_TE = at::softplus(at::matmul(gate_input, noise_gate_ED_.t()));
    const at::Tensor normal =
        counter_normal(random_key({draw.key, kShazeerStream}),
                       block_counters(draw.first_row, rows, experts, gate_input.device()));
    out.logits_TE = out.logits_TE + normal.to(out.noise_std_TE.scalar_type()) * out.noise_std_TE;
  }
  out.scores_TE = config_.score_function == ScoreFunction::kSoftmax ? at::softmax(out.logits_TE, -1)
                                                                    : at::sigmoid(out.logits_TE);
  at::Tensor selection_TE = out.scores_TE;
  if (config_.expert_bias) selection_TE = out.scores_TE.detach() + expert_bias_E_;
  if (config_.topk_groups > 0 && config_.topk_groups < num_groups_)
    selection_TE = within_best_groups(selection_TE.detach(), num_groups_, config_.topk_groups);
  out.experts_TK = std::get<1>(at::topk(selection_TE.detach(), config_.top_k, -1));
  out.weights_TK = gate_weights(out.scores_TE, out.experts_TK, x_TD.scalar_type());
  return out;
}

at::Tensor Router::gate_weights(const at::Tensor& scores_TE, const at::Tensor& experts_TK,
                                at::ScalarType dtype) const {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  at::Tensor weights_TK = scores_TE.gather(1, experts_TK);
  // One chosen score renormalised is always 1: the gate would get no gradient from the task
  // loss. So top-1 keeps its raw score (Switch), whatever moe.renormalize says.
  if (config_.renormalize && experts_TK.size(1) > 1)
    weights_TK = weights_TK / weights_TK.sum(-1, /*keepdim=*/true);
  return (weights_TK * config_.route_scale).to(dtype);
}

void Router::update_expert_bias(const at::Tensor& tokens_per_expert_E) {
  if (!config_.expert_bias) return;
  c10::NoGradGuard no_grad;
  at::Tensor load_E = tokens_per_expert_E.to(expert_bias_E_.options());
  expert_bias_E_.add_(at::sign(load_E.mean() - load_E), config_.bias_update_rate);
}

}  // namespace triage
