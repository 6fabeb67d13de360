// The sharded optimizer (train.shard_optimizer, ZeRO-1 as in DeepSpeed and Megatron-Core's
// distributed optimizer): the same AdamW as optimizer.h, but each rank keeps the moments of
// its own chunk of every gradient bucket only (grad_buckets.h), so optimizer state per rank
// shrinks by the size of the group that syncs the bucket: the world for replicated
// parameters, the expert-DP group for experts. A step updates this rank's chunk of the
// parameters from its chunk of the synced gradient, then all-gathers the parameters.
// Parameters are float32 (or float64) themselves, also under bf16 autocast, so they are the
// master weights: no separate copy is kept.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "common/parameters.h"
#include "config/config.h"
#include "parallel/communicator.h"
#include "train/grad_sync.h"

namespace triage {

class ShardedAdamW {
 public:
  // sync: built with GradSyncOptions::shard. first_expert: the global id of this rank's
  // first local expert (names the pieces checkpoints store).
  ShardedAdamW(const ParameterList& parameters, GradientSync& sync, const TrainConfig& train,
               int64_t first_expert);

  void set_learning_rate(double lr) { lr_ = lr; }
  // The global norm of the synced gradient, from every rank's chunks (collective over the
  // world); scales the chunks so that it is at most max_norm (0: never). Returns the norm
  // before scaling.
  double clip_gradients(Communicator& world, double max_norm);
  // One AdamW step on this rank's chunks, then every rank gets the whole parameters.
  void step();

  // This rank's part of the state, bucket by bucket, for checkpoints.
  ShardedOptimizerState& state() { return state_; }
  // Bytes of optimizer state this rank holds.
  int64_t state_bytes() const;

 private:
  ParameterList parameters_;
  GradientSync& sync_;
  ShardedOptimizerState state_;
  double lr_, weight_decay_;
};

}  // namespace triage
