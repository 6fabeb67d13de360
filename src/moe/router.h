// The router (the GP): a linear gate that scores every expert for every token and picks
// the top k. Shape legend: T tokens, D model width, E experts, K experts per token.
//
//   logits_TE  = x_TD @ gate_ED^T           (computed in at least float32: "fp32 router")
//                (noise shazeer, training: + N(0,1) * softplus(x_TD @ noise_gate_ED^T))
//   scores_TE  = softmax(logits) over E, or sigmoid(logits) per expert
//   experts_TK = top-k of (scores_TE + bias_E)   bias only chooses, never weighs
//                (group-limited: only among the experts of the token's best groups)
//   weights_TK = scores at experts_TK, / their sum if renormalize, * route_scale
#pragma once

#include <ATen/ATen.h>

#include "common/parameters.h"
#include "config/config.h"

namespace triage {

struct RouterOutput {
  at::Tensor logits_TE;   // gate logits, router precision
  at::Tensor scores_TE;   // softmax or sigmoid of the logits, router precision
  at::Tensor experts_TK;  // int64 chosen experts, highest selection score first
  at::Tensor weights_TK;  // combine weights, in the input's dtype
  // noise shazeer while training only: the logits before noise and the noise's spread,
  // from which the load estimate of the cv_squared loss is formed.
  at::Tensor clean_logits_TE, noise_std_TE;
};

// Where a training forward's noise comes from: the stream's key (layer, step, micro-batch)
// and the global index of x's first row, so that each row draws the same whatever the layout.
struct NoiseDraw {
  uint64_t key = 0;
  int64_t first_row = 0;
};

// Group-limited routing: selection_TE with every expert outside the token's `best` groups
// (of `groups` equal groups of consecutive ids, each scored by the sum of its two best
// entries) set to -infinity, so that top-k picks inside the best groups only.
at::Tensor within_best_groups(const at::Tensor& selection_TE, int64_t groups, int64_t best);

class Router {
 public:
  // dtype: the model's; the gate is kept in float32 unless the model is float64.
  // num_groups: the expert groups of group-limited routing (config.num_groups resolved).
  Router(const MoeConfig& config, int64_t d_model, at::ScalarType dtype, at::Generator generator,
         int64_t num_groups = 1);

  // training enables the configured noise (moe.noise), drawn as `draw` says.
  RouterOutput forward(const at::Tensor& x_TD, bool training, NoiseDraw draw = {});

  // Combine weights of the chosen experts: scores at experts_TK, renormalised if asked,
  // times route_scale, in `dtype`. forward() uses it; so does a routing override.
  at::Tensor gate_weights(const at::Tensor& scores_TE, const at::Tensor& experts_TK,
                          at::ScalarType dtype) const;

  // Aux-loss-free balancing: bias_E += rate * sign(mean load - load_E). Not a gradient step;
  // call once per optimizer step with the tokens each expert received.
  void update_expert_bias(const at::Tensor& tokens_per_expert_E);

  at::Tensor& gate_ED() { return gate_ED_; }
  at::Tensor& expert_bias_E() { return expert_bias_E_; }
  at::Tensor& noise_gate_ED() { return noise_gate_ED_; }  // defined under noise shazeer
  ParameterList parameters() const;
  BufferList buffers() const { return {{"expert_bias", expert_bias_E_}}; }

 private:
  MoeConfig config_;
  int64_t num_groups_;
  at::Tensor gate_ED_;
  at::Tensor noise_gate_ED_;  // zeros at first (Shazeer), so the first noise is uniform
  at::Tensor expert_bias_E_;  // zeros; not trained by gradients
};

}  // namespace triage
