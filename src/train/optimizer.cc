// AdamW parameter groups and sharded global-norm clipping; see the header.
#include "train/optimizer.h"

#include <c10/core/GradMode.h>

#include <cmath>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "common/error.h"
#include "parallel/watchdog.h"

namespace triage {

std::unique_ptr<torch::optim::AdamW> make_optimizer(const ParameterList& parameters,
                                                    const TrainConfig& train) {
  auto adamw = torch::optim::AdamWOptions(train.lr).betas({kAdamBeta1, kAdamBeta2}).eps(kAdamEps);
  std::vector<at::Tensor> decayed, not_decayed;
  for (const auto& p : parameters)
    (p.tensor.dim() >= 2 ? decayed : not_decayed).push_back(p.tensor);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed,
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(adamw).weight_decay(train.weight_decay)));
  groups.emplace_back(not_decayed, std::make_unique<torch::optim::AdamWOptions>(
                                       torch::optim::AdamWOptions(adamw).weight_decay(0)));
  auto optimizer = std::make_unique<torch::optim::AdamW>(std::move(groups), adamw);
  // The moments now, before any step: made lazily by the first step, between its
  // temporaries, they leave the heap (never trimmed, allocator.h) fragmented, and a
  // scaled-down Mixtral's peak grew by 0.45 GB a step (measured, one rank).
  for (const auto& p : parameters) adamw_state(*optimizer, p.tensor);
  return optimizer;
}

void set_learning_rate(torch::optim::AdamW& optimizer, double lr) {
  for (auto& group : optimizer.param_groups())
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
}

double clip_gradients(const ParameterList& parameters, Communicator& ep, double max_norm) {
  c10::NoGradGuard no_grad;
  TRIAGE_ASSERT(!parameters.empty(), "no parameters to clip");
  auto doubles = at::TensorOptions().dtype(at::kDouble).device(parameters.front().tensor.device());
  at::Tensor replicated = at::zeros({1}, doubles), expert = at::zeros({1}, doubles);
  for (const auto& p : parameters) {
    at::Tensor sq = p.tensor.grad().to(at::kDouble).pow(2).sum();
    (p.sharding == Sharding::kExpert ? expert : replicated).add_(sq);
  }
  {
    watchdog::Scope scope("gradient-norm all-reduce");
    ep.allreduce_sum_(expert);
  }
  const double norm = std::sqrt((replicated + expert).item<double>());  // device-to-host sync
  const double scale = clip_scale(norm, max_norm);
  if (scale != 1.0)
    for (const auto& p : parameters) p.tensor.mutable_grad().mul_(scale);
  return norm;
}

}  // namespace triage
