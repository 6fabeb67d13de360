// The optimizer of a run: AdamW (betas 0.9, 0.95; eps 1e-8) with weight decay on matrices
// only (norm weights and biases, 1-D, are not decayed, as in Megatron-LM and GPT-3), and
// global-norm gradient clipping that knows experts are sharded.
#pragma once

#include <torch/optim/adamw.h>

#include <memory>

#include "common/parameters.h"
#include "config/config.h"
#include "parallel/communicator.h"

namespace triage {

// AdamW's constants, shared with the sharded optimizer (sharded_optimizer.h).
constexpr double kAdamBeta1 = 0.9, kAdamBeta2 = 0.95, kAdamEps = 1e-8;

// What clipping multiplies every gradient by when their global norm is `norm`: 1 under
// max_norm (0: never clip), else max_norm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_.
inline double clip_scale(double norm, double max_norm) {
  return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

std::unique_ptr<torch::optim::AdamW> make_optimizer(const ParameterList& parameters,
                                                    const TrainConfig& train);

// Every parameter group's learning rate (the schedule's value for this step).
void set_learning_rate(torch::optim::AdamW& optimizer, double lr);

// Scales every gradient so that their global norm is at most max_norm (0: never), and
// returns the norm before scaling. After GradientSync each rank holds the same replicated
// gradients and its own experts' gradients; the EP group holds each expert once, so the
// squared norm is (replicated, local) + (experts, summed over `ep`). Collective over ep.
double clip_gradients(const ParameterList& parameters, Communicator& ep, double max_norm);

}  // namespace triage
