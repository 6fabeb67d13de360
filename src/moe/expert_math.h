// The arithmetic of one expert on one run of its rows, forward and backward, outside
// autograd. The experts' autograd function calls it run by run, writing into slices of
// buffers it owns: no run builds a gradient of all experts' weights or of all rows, so
// the work is linear in rows and experts, and a row's result depends only on its run,
// never on how runs were grouped into exchange chunks.
// Legend: N rows of the run, D model width, H expert hidden width, E local experts.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "moe/expert_type.h"

namespace triage {

// The stacked weights (E x D x H, E x D x H, E x H x D); w_up only for swiglu.
struct ExpertWeights {
  ExpertType type;
  at::Tensor w_in_EDH, w_up_EDH, w_out_EHD;
};

// Gradients of the same shapes and dtypes, added to run by run. An expert's first run
// writes its gradients and later runs add to them, so memory is not zero-filled first
// (at many experts the gradients are most of the bytes a step moves); zero_unwritten()
// then zeroes the experts that got no rows.
struct ExpertGrads {
  at::Tensor w_in_EDH, w_up_EDH, w_out_EHD;
  std::vector<bool> written;  // per expert
};

ExpertGrads unwritten_grads(const ExpertWeights& weights);
void zero_unwritten(ExpertGrads& grads);

// Writes the pre-activations gate_NH (and up_NH for swiglu) alone: expert_forward's first
// GEMMs, so that backward can recompute them (train.recompute: experts) bit for bit.
void expert_preactivations(const ExpertWeights& weights, int64_t expert, const at::Tensor& x_ND,
                           at::Tensor gate_NH, at::Tensor up_NH);

// Writes the pre-activations gate_NH (and up_NH for swiglu) and the output y_ND, all
// slices of the caller's buffers, in x_ND's dtype.
void expert_forward(const ExpertWeights& weights, int64_t expert, const at::Tensor& x_ND,
                    at::Tensor gate_NH, at::Tensor up_NH, at::Tensor y_ND);

// From the forward's x, gate, up and the output gradient: writes grad_x_ND and adds this
// run's share of the expert's weight gradients to `grads`.
void expert_backward(const ExpertWeights& weights, int64_t expert, const at::Tensor& x_ND,
                     const at::Tensor& gate_NH, const at::Tensor& up_NH,
                     const at::Tensor& grad_y_ND, at::Tensor grad_x_ND, ExpertGrads& grads);

}  // namespace triage
