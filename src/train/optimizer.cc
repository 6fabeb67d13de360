// AdamW parameter groups and sharded global-norm clipping; see the header.
#include "train/optimizer.h"

#include <c10/core/GradMode.h>

#include <cmath>
#include <vector>

#include "common/error.h"
#include "parallel/watchdog.h"

namespace triage {

std::unique_ptr<torch::optim::AdamW> make_optimizer(const ParameterList& parameters,
                                                    const TrainConfig& train) {
  auto adamw = torch::optim::AdamWOptions(train.lr).betas({0.9, 0.95}).eps(1e-8);
  std::vector<at::Tensor> decayed, not_decayed;
  for (const auto& p : parameters)
    (p.tensor.dim() >= 2 ? decayed : not_decayed).push_back(p.tensor);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed,
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(adamw).weight_decay(train.weight_decay)));
  groups.emplace_back(not_decayed, std::make_unique<torch::optim::AdamWOptions>(
                                       torch::optim::AdamWOptions(adamw).weight_decay(0)));
  return std::make_unique<torch::optim::AdamW>(std::move(groups), adamw);
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
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);  // as torch.nn.utils.clip_grad_norm_
    for (const auto& p : parameters) p.tensor.mutable_grad().mul_(scale);
  }
  return norm;
}

}  // namespace triage
