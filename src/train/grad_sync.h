// Gradient synchronisation after backward. Each rank r holds the gradient of its own loss
// L_r (the mean over its tokens); after synchronize() every rank holds the gradient of the
// global mean loss L = (1/W) * sum_r L_r over the W ranks of the world:
//   replicated parameters (router, ...):  g = (1/W) * sum over the world of g_r
//   expert parameters:                    g = (1/W) * sum over the expert-DP group of g_r
// An expert's gradient on its owner already sums the tokens of its whole EP group (the
// exchange's backward all-to-all brought them); the expert-DP sum adds the other groups.
//
// Gradients travel in flat buckets of at most bucket_bytes (one all-reduce each, grouped by
// sharding and dtype), not one call per tensor. A parameter without a gradient (an expert
// no token reached) counts as zeros, so every rank issues the same collectives.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "common/parameters.h"
#include "parallel/communicator.h"

namespace triage {

class GradientSync {
 public:
  static constexpr int64_t kDefaultBucketBytes = 32 << 20;

  GradientSync(const ParameterList& parameters, Communicator& world, Communicator& expert_dp,
               int64_t bucket_bytes = kDefaultBucketBytes);

  void synchronize();
  size_t bucket_count() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<at::Tensor> parameters;
    Communicator* comm;
  };
  std::vector<Bucket> buckets_;
  double scale_;  // 1 / world size
};

}  // namespace triage
