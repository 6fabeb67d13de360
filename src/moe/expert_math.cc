// One expert on one run, forward and backward; see the header.
#include "moe/expert_math.h"

namespace triage {
namespace {

// The expert's matrix in the rows' dtype (a no-op unless the rows are reduced precision).
at::Tensor matrix(const at::Tensor& stacked, int64_t expert, const at::Tensor& rows) {
  return stacked.select(0, expert).to(rows.scalar_type());
}

// grad = a^T b (the expert's first run) or grad += a^T b, in the gradient's dtype.
void add_outer(at::Tensor grad, const at::Tensor& a, const at::Tensor& b, bool first) {
  if (grad.scalar_type() != a.scalar_type()) {
    first ? grad.copy_(at::mm(a.t(), b)) : grad.add_(at::mm(a.t(), b));
  } else if (first) {
    at::mm_out(grad, a.t(), b);
  } else {
    grad.addmm_(a.t(), b);
  }
}

}  // namespace

ExpertGrads unwritten_grads(const ExpertWeights& weights) {
  ExpertGrads grads;
  grads.w_in_EDH = at::empty_like(weights.w_in_EDH);
  if (weights.type == ExpertType::kSwiglu) grads.w_up_EDH = at::empty_like(weights.w_up_EDH);
  grads.w_out_EHD = at::empty_like(weights.w_out_EHD);
  grads.written.assign(size_t(weights.w_in_EDH.size(0)), false);
  return grads;
}

void zero_unwritten(ExpertGrads& grads) {
  for (size_t e = 0; e < grads.written.size(); ++e) {
    if (grads.written[e]) continue;
    for (at::Tensor* grad : {&grads.w_in_EDH, &grads.w_up_EDH, &grads.w_out_EHD})
      if (grad->defined()) grad->select(0, int64_t(e)).zero_();
  }
}

void expert_preactivations(const ExpertWeights& weights, int64_t expert, const at::Tensor& x_ND,
                           at::Tensor gate_NH, at::Tensor up_NH) {
  at::mm_out(gate_NH, x_ND, matrix(weights.w_in_EDH, expert, x_ND));
  if (weights.type == ExpertType::kSwiglu)
    at::mm_out(up_NH, x_ND, matrix(weights.w_up_EDH, expert, x_ND));
}

void expert_forward(const ExpertWeights& weights, int64_t expert, const at::Tensor& x_ND,
                    at::Tensor gate_NH, at::Tensor up_NH, at::Tensor y_ND) {
  expert_preactivations(weights, expert, x_ND, gate_NH, up_NH);
  at::mm_out(y_ND, expert_hidden(weights.type, gate_NH, up_NH),
             matrix(weights.w_out_EHD, expert, x_ND));
}

void expert_backward(const ExpertWeights& weights, int64_t expert, const at::Tensor& x_ND,
                     const at::Tensor& gate_NH, const at::Tensor& up_NH,
                     const at::Tensor& grad_y_ND, at::Tensor grad_x_ND, ExpertGrads& grads) {
  const bool first = !grads.written[size_t(expert)];
  grads.written[size_t(expert)] = true;
  const at::Tensor grad_hidden_NH = at::mm(grad_y_ND, matrix(weights.w_out_EHD, expert, x_ND).t());
  const at::Tensor w_in_DH = matrix(weights.w_in_EDH, expert, x_ND);
  if (weights.type == ExpertType::kGelu) {
    add_outer(grads.w_out_EHD.select(0, expert), at::gelu(gate_NH), grad_y_ND, first);
    const at::Tensor grad_gate_NH = at::gelu_backward(grad_hidden_NH, gate_NH);
    add_outer(grads.w_in_EDH.select(0, expert), x_ND, grad_gate_NH, first);
    at::mm_out(grad_x_ND, grad_gate_NH, w_in_DH.t());
    return;
  }
  const at::Tensor silu_NH = at::silu(gate_NH);
  add_outer(grads.w_out_EHD.select(0, expert), silu_NH * up_NH, grad_y_ND, first);
  const at::Tensor grad_up_NH = grad_hidden_NH * silu_NH;
  const at::Tensor grad_gate_NH = at::silu_backward(grad_hidden_NH * up_NH, gate_NH);
  add_outer(grads.w_in_EDH.select(0, expert), x_ND, grad_gate_NH, first);
  add_outer(grads.w_up_EDH.select(0, expert), x_ND, grad_up_NH, first);
  at::mm_out(grad_x_ND, grad_gate_NH, w_in_DH.t());
  grad_x_ND.addmm_(grad_up_NH, matrix(weights.w_up_EDH, expert, x_ND).t());
}

}  // namespace triage
