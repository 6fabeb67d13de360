// Shared by the tests under mpirun: the EP size given on the command line, and the
// process groups for a config with that EP size.
#pragma once

#include <cstdint>

#include <ATen/ATen.h>

#include <algorithm>

#include "config/config.h"
#include "moe/moe_layer.h"
#include "parallel/process_groups.h"

namespace triage::testing_support {

extern int64_t g_ep_size;  // from --ep N

inline MoeConfig ep_moe_config(int64_t num_experts, int64_t top_k) {
  MoeConfig config;
  config.num_experts = num_experts;
  config.top_k = top_k;
  return config;
}

inline ProcessGroups groups_for(const MoeConfig& moe) {
  Config config;
  config.moe = moe;
  config.parallel.expert = g_ep_size;
  return make_process_groups(config);
}

// max |actual - expected| relative to the larger of 1 and max |expected|.
inline double relative_error(const at::Tensor& actual, const at::Tensor& expected) {
  if (expected.numel() == 0)
    return actual.sizes() == expected.sizes() ? 0.0 : 1e300;  // a rank with no tokens
  double scale = std::max(1.0, expected.abs().max().item<double>());
  return (actual - expected).abs().max().item<double>() / scale;
}

// One rank's (or one reference shard's) loss: the mean over its tokens of sum_d y * r,
// plus the layer's balance loss and z-loss.
inline at::Tensor objective(const MoeOutput& out, const at::Tensor& r) {
  return (out.y * r).sum(-1).mean() + out.balance_loss + out.z_loss;
}

}  // namespace triage::testing_support
