// ZeRO-1 AdamW on chunks; see the header. The update is optimizer.h's AdamW step written
// out element-wise, in LibTorch's order of operations, so that both give the same numbers.
#include "train/sharded_optimizer.h"

#include <c10/core/GradMode.h>

#include <cmath>
#include <string>

#include "parallel/ordered_reduce.h"
#include "parallel/watchdog.h"
#include "train/optimizer.h"

namespace triage {
ShardedAdamW::ShardedAdamW(const ParameterList& parameters, GradientSync& sync,
                           const TrainConfig& train, int64_t first_expert)
    : parameters_(parameters), sync_(sync), lr_(train.lr), weight_decay_(train.weight_decay) {
  for (const GradBucket& bucket : sync.buckets()) {
    OptimizerShard shard;
    shard.pieces = shard_pieces(bucket, parameters_, bucket.comm->rank(), first_expert);
    const auto options = parameters_[bucket.params[0]].tensor.options().requires_grad(false);
    shard.exp_avg = at::zeros({bucket.chunk}, options);
    shard.exp_avg_sq = at::zeros({bucket.chunk}, options);
    state_.shards.push_back(std::move(shard));
  }
}

int64_t ShardedAdamW::state_bytes() const {
  int64_t bytes = 0;
  for (const OptimizerShard& s : state_.shards)
    bytes += (s.exp_avg.numel() + s.exp_avg_sq.numel()) * int64_t(s.exp_avg.element_size());
  return bytes;
}

double ShardedAdamW::clip_gradients(Communicator& world, double max_norm) {
  c10::NoGradGuard no_grad;
  // Every element of every synced gradient is in exactly one rank's chunk (padding is zero).
  at::Tensor squares = at::zeros({1}, parameters_.front().tensor.options().dtype(at::kDouble));
  for (size_t b = 0; b < state_.shards.size(); ++b)
    squares.add_(sync_.shard_gradient(b).to(at::kDouble).pow(2).sum());
  {
    watchdog::Scope scope("gradient-norm all-reduce");
    world.allreduce_sum_(squares);
  }
  const double norm = std::sqrt(squares.item<double>());
  const double scale = clip_scale(norm, max_norm);
  if (scale != 1.0)
    for (size_t b = 0; b < state_.shards.size(); ++b) sync_.shard_gradient(b).mul_(scale);
  return norm;
}

void ShardedAdamW::step() {
  c10::NoGradGuard no_grad;
  const int64_t steps = ++state_.steps;
  const double correction1 = 1 - std::pow(kAdamBeta1, double(steps)),
               correction2 = 1 - std::pow(kAdamBeta2, double(steps));
  const std::vector<GradBucket>& buckets = sync_.buckets();
  for (size_t b = 0; b < buckets.size(); ++b) {
    const GradBucket& bucket = buckets[b];
    OptimizerShard& shard = state_.shards[b];
    const at::Tensor& grad = sync_.shard_gradient(b);
    // This rank's chunk of the parameters (zero in the padding).
    at::Tensor chunk = at::zeros_like(shard.exp_avg);
    for (const ShardPiece& piece : shard.pieces)
      chunk.narrow(0, piece.chunk_offset, piece.length)
          .copy_(parameters_[piece.param].tensor.detach().reshape({-1}).narrow(
              0, piece.param_offset, piece.length));
    // Decoupled weight decay on matrices only, as make_optimizer's groups.
    for (const ShardPiece& piece : shard.pieces)
      if (parameters_[piece.param].tensor.dim() >= 2 && weight_decay_ != 0)
        chunk.narrow(0, piece.chunk_offset, piece.length).mul_(1 - lr_ * weight_decay_);
    shard.exp_avg.mul_(kAdamBeta1).add_(grad, 1 - kAdamBeta1);
    shard.exp_avg_sq.mul_(kAdamBeta2).addcmul_(grad, grad, 1 - kAdamBeta2);
    const at::Tensor denom = (shard.exp_avg_sq.sqrt() / std::sqrt(correction2)).add_(kAdamEps);
    chunk.addcdiv_(shard.exp_avg, denom, -lr_ / correction1);

    watchdog::Scope scope("parameter all-gather " + std::to_string(b + 1) + "/" +
                          std::to_string(buckets.size()));
    at::Tensor flat = chunk;
    if (bucket.comm->size() > 1) {
      flat = at::empty({bucket.padded()}, chunk.options());
      PendingAllGather(*bucket.comm, chunk, flat).wait();
    }
    for (size_t k = 0; k < bucket.params.size(); ++k) {
      at::Tensor p = parameters_[bucket.params[k]].tensor.detach();
      p.copy_(flat.narrow(0, bucket.offsets[k], p.numel()).view_as(p));
    }
  }
}

}  // namespace triage
