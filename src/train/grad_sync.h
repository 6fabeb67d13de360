// Gradient synchronisation. Each rank r holds the gradient of its own loss L_r (the mean
// over its tokens); after synchronize() every rank holds the gradient of the global mean
// loss L = (1/W) * sum_r L_r over the W ranks of the world:
//   replicated parameters (router, ...):  g = (1/W) * sum over the world of g_r
//   expert parameters:                    g = (1/W) * sum over the expert-DP group of g_r
// An expert's gradient on its owner already sums the tokens of its whole EP group (the
// exchange's backward all-to-all brought them); the expert-DP sum adds the other groups.
//
// Gradients travel in the buckets of grad_buckets.h, each reduce-scattered (summed in rank
// order, ordered_reduce.h) and, unless the optimizer is sharded, all-gathered back. With
// start_during_backward(), a bucket starts as soon as backward has finished its last
// gradient (and every earlier bucket has started: all ranks start them in one order), and
// MPI is given a chance to move bytes each time a gradient is finished; synchronize() starts
// the rest and waits. The sums are the same bits either way. Construction is collective
// (it copies the groups). A parameter without a gradient
// (an expert no token reached) counts as zeros, so every rank issues the same collectives.
//
// Memory: each bucket that travels keeps its gradients in one flat buffer, and the
// parameters' .grad() are views into it (as DDP's gradient_as_bucket_view), so backward
// accumulates straight into what travels and no bucket is copied. (A bucket that stays
// home, a group of one rank unsharded, keeps autograd's own gradients.) What a reduce-scatter
// receives (a bucket's worth) is bounded: at most options.reduce_bytes_in_flight of buckets reduce
// at once (at least one), a further bucket first waits for the oldest. A .grad() someone replaced
// (set to none, or made anew) is taken back into the buffer when its bucket starts.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "common/parameters.h"
#include "parallel/communicator.h"
#include "parallel/grad_buckets.h"
#include "parallel/ordered_reduce.h"

namespace triage {

// What the reduce-scatters in flight may receive at once, in bytes (one bucket at least).
constexpr int64_t kReduceBytesInFlight = int64_t(256) << 20;

struct GradSyncOptions {
  static constexpr int64_t kDefaultBucketBytes = 32 << 20;
  int64_t bucket_bytes = kDefaultBucketBytes;
  // Keep only this rank's chunk of each summed bucket, for the sharded optimizer (ZeRO-1);
  // the parameters' .grad() are then left unsynced.
  bool shard = false;
  // Gradients travel as bfloat16 (half the bytes) and are summed in their own dtype.
  bool bf16_wire = false;
  // What the reduce-scatters in flight may receive at once (one bucket at least).
  int64_t reduce_bytes_in_flight = kReduceBytesInFlight;
};

class GradientSync {
 public:
  GradientSync(const ParameterList& parameters, Communicator& world, Communicator& expert_dp,
               GradSyncOptions options = {});
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Zeroes every gradient in place, keeping .grad() the buckets' views (instead of an
  // optimizer's zero_grad, which would fail on views); those of buckets that stay home are
  // set to none.
  void zero_gradients();
  // The next backward is the last before synchronize(): start buckets as they are ready.
  void start_during_backward();
  void synchronize();

  const std::vector<GradBucket>& buckets() const { return buckets_; }
  size_t bucket_count() const { return buckets_.size(); }
  // Sharded: this rank's chunk of bucket b's synced gradient (after synchronize()).
  at::Tensor& shard_gradient(size_t b) { return flights_[b].chunk; }
  // How many buckets the last synchronize() found already started during backward.
  size_t started_during_backward() const { return started_during_backward_; }
  // The most the reduce-scatters in flight have received at once, in bytes.
  int64_t peak_reducing_bytes() const { return peak_reducing_bytes_; }

 private:
  friend struct GradientReadyHook;
  void on_gradient_ready(size_t param);
  void start(size_t b);
  // Points parameter `param`'s .grad() at its place in the bucket buffer (copying a gradient
  // made elsewhere in, or zeros for none).
  void take_gradient_into_bucket(size_t param);
  void finish_reduce(size_t b);
  // Moves every started bucket on as far as it can go (block: to the end).
  void advance(bool block);
  Communicator* gather_comm(size_t b);

  struct Flight {  // one bucket's trip
    enum class Stage { kIdle, kReducing, kReduced, kGathering, kDone } stage = Stage::kIdle;
    at::Tensor flat, chunk;  // flat: the bucket's buffer while it travels
    std::optional<PendingReduceScatter> reduce;
    std::optional<PendingAllGather> gather;
  };

  ParameterList parameters_;
  // Copies of the groups for the buckets alone: collectives on one communicator must start
  // in the same order on every rank, and backward's own (the exchange's, the balance loss's)
  // interleave with buckets differently on different ranks. The all-gathers have their own,
  // since a bucket's reduce-scatter may finish before or after the next one starts.
  std::unique_ptr<Communicator> world_, expert_dp_, world_gather_, expert_dp_gather_;
  std::vector<GradBucket> buckets_;
  std::vector<at::Tensor> storage_;  // per bucket: the flat buffer the .grad() views live in
  std::vector<size_t> bucket_of_param_;
  std::vector<size_t> slot_of_param_;  // its index in its bucket's params
  GradSyncOptions options_;
  double scale_;  // 1 / world size
  bool armed_ = false;
  bool hooked_ = false;
  std::vector<Flight> flights_;
  std::vector<int64_t> unfinished_;  // per bucket: its parameters backward has not finished
  std::vector<char> finished_;       // per parameter, this backward
  size_t next_start_ = 0, next_gather_ = 0;
  size_t started_during_backward_ = 0;
  int64_t reducing_bytes_ = 0;  // what the reduce-scatters in flight receive
  int64_t peak_reducing_bytes_ = 0;
};

}  // namespace triage
