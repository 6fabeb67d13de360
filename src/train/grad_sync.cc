// Bucketed gradient all-reduce; see the header for the scaling rule.
#include "train/grad_sync.h"

#include <c10/core/GradMode.h>

#include "parallel/watchdog.h"

#include <map>
#include <string>
#include <utility>

namespace triage {

GradientSync::GradientSync(const ParameterList& parameters, Communicator& world,
                           Communicator& expert_dp, int64_t bucket_bytes)
    : scale_(1.0 / double(world.size())) {
  // Parameters keep their declaration order inside each (sharding, dtype) group, so every
  // rank builds identical buckets.
  std::map<std::pair<Sharding, at::ScalarType>, std::vector<at::Tensor>> groups;
  for (const auto& p : parameters) groups[{p.sharding, p.tensor.scalar_type()}].push_back(p.tensor);
  for (auto& [key, tensors] : groups) {
    Communicator* comm = key.first == Sharding::kExpert ? &expert_dp : &world;
    int64_t filled = bucket_bytes;  // forces a new bucket for the group's first tensor
    for (const at::Tensor& tensor : tensors) {
      const int64_t bytes = tensor.numel() * int64_t(tensor.element_size());
      if (filled + bytes > bucket_bytes && filled > 0) {
        buckets_.push_back({{}, comm});
        filled = 0;
      }
      buckets_.back().parameters.push_back(tensor);
      filled += bytes;
    }
  }
}

void GradientSync::synchronize() {
  c10::NoGradGuard no_grad;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bucket = buckets_[b];
    watchdog::Scope scope("gradient bucket " + std::to_string(b + 1) + "/" +
                          std::to_string(buckets_.size()));
    for (at::Tensor& p : bucket.parameters)
      if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    if (bucket.comm->size() == 1) {  // nothing to sum (expert weights at EP = world): no copies
      for (at::Tensor& p : bucket.parameters) p.mutable_grad().mul_(scale_);
      continue;
    }
    std::vector<at::Tensor> flat_grads;
    for (at::Tensor& p : bucket.parameters) flat_grads.push_back(p.grad().reshape({-1}));
    at::Tensor flat = at::cat(flat_grads);
    bucket.comm->allreduce_sum_(flat);
    flat.mul_(scale_);
    int64_t offset = 0;
    for (at::Tensor& p : bucket.parameters) {
      p.mutable_grad().copy_(flat.narrow(0, offset, p.numel()).view_as(p));
      offset += p.numel();
    }
  }
}

}  // namespace triage
