// Bucketed, overlappable gradient sync; see the header for the scaling rule and ordering.
#include "train/grad_sync.h"

#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <string>
#include <utility>

#include "parallel/watchdog.h"

namespace triage {

// Called by autograd after it has added a parameter's last gradient of this backward.
struct GradientReadyHook : torch::autograd::PostAccumulateGradHook {
  GradientReadyHook(GradientSync* sync, size_t param) : sync(sync), param(param) {}
  void operator()(const torch::autograd::Variable&) override { sync->on_gradient_ready(param); }
  GradientSync* sync;
  size_t param;
};

GradientSync::GradientSync(const ParameterList& parameters, Communicator& world,
                           Communicator& expert_dp, GradSyncOptions options)
    : parameters_(parameters),
      world_(world.split(0, world.rank())),
      expert_dp_(expert_dp.split(0, expert_dp.rank())),
      world_gather_(world.split(0, world.rank())),
      expert_dp_gather_(expert_dp.split(0, expert_dp.rank())),
      buckets_(make_grad_buckets(parameters, *world_, *expert_dp_, options.bucket_bytes)),
      bucket_of_param_(parameters.size(), 0),
      slot_of_param_(parameters.size(), 0),
      options_(options),
      scale_(1.0 / double(world.size())),
      flights_(buckets_.size()),
      unfinished_(buckets_.size(), 0),
      finished_(parameters.size(), 0) {
  c10::NoGradGuard no_grad;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const GradBucket& bucket = buckets_[b];
    // A bucket that stays home (a group of one rank, unsharded) needs no buffer: its
    // gradients stay autograd's own, which saves backward an add per parameter.
    const bool travels = bucket.comm->size() > 1 || options_.shard;
    storage_.push_back(
        travels ? at::zeros({bucket.padded()}, parameters_[bucket.params[0]].tensor.options())
                : at::Tensor());
    for (size_t k = 0; k < bucket.params.size(); ++k) {
      bucket_of_param_[bucket.params[k]] = b;
      slot_of_param_[bucket.params[k]] = k;
      if (travels) take_gradient_into_bucket(bucket.params[k]);
    }
  }
}

void GradientSync::take_gradient_into_bucket(size_t param) {
  const size_t b = bucket_of_param_[param];
  const GradBucket& bucket = buckets_[b];
  const size_t k = slot_of_param_[param];
  const at::Tensor& p = parameters_[param].tensor;
  const at::Tensor& grad = p.grad();
  if (!storage_[b].defined()) {  // stays home
    if (!grad.defined()) p.mutable_grad() = at::zeros_like(p);
    return;
  }
  at::Tensor view = storage_[b].narrow(0, bucket.offsets[k], p.numel()).view_as(p);
  if (grad.defined() && grad.data_ptr() == view.data_ptr()) return;
  if (grad.defined())
    view.copy_(grad);
  else
    view.zero_();
  p.mutable_grad() = view;
}

void GradientSync::zero_gradients() {
  c10::NoGradGuard no_grad;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    if (storage_[b].defined()) {
      storage_[b].zero_();
      for (size_t param : buckets_[b].params) take_gradient_into_bucket(param);
    } else {
      for (size_t param : buckets_[b].params)
        parameters_[param].tensor.mutable_grad() = at::Tensor();
    }
  }
}

GradientSync::~GradientSync() {
  if (!hooked_) return;
  for (const NamedParameter& p : parameters_)
    torch::autograd::impl::set_post_acc_grad_hooks(p.tensor, nullptr);
}

void GradientSync::start_during_backward() {
  if (!hooked_) {
    for (size_t i = 0; i < parameters_.size(); ++i)
      torch::autograd::impl::set_post_acc_grad_hooks(parameters_[i].tensor,
                                                     std::make_unique<GradientReadyHook>(this, i));
    hooked_ = true;
  }
  for (size_t b = 0; b < buckets_.size(); ++b) unfinished_[b] = int64_t(buckets_[b].params.size());
  std::fill(finished_.begin(), finished_.end(), 0);
  armed_ = true;
}

void GradientSync::on_gradient_ready(size_t param) {
  if (!armed_ || finished_[param]) return;
  c10::NoGradGuard no_grad;
  finished_[param] = 1;
  --unfinished_[bucket_of_param_[param]];
  // Buckets start in order, so a bucket ready early waits for the ones before it.
  while (next_start_ < buckets_.size() && unfinished_[next_start_] == 0) start(next_start_++);
  advance(/*block=*/false);
}

void GradientSync::start(size_t b) {
  const GradBucket& bucket = buckets_[b];
  Flight& f = flights_[b];
  for (size_t param : bucket.params) take_gradient_into_bucket(param);
  if (bucket.comm->size() == 1 && !options_.shard) {  // nothing to sum (experts at EP = world)
    for (size_t param : bucket.params) parameters_[param].tensor.mutable_grad().mul_(scale_);
    f.stage = Flight::Stage::kDone;
    return;
  }
  f.flat = storage_[b];
  if (bucket.comm->size() == 1) {  // sharded, but the whole bucket is this rank's
    f.chunk = f.flat.mul_(scale_);
    f.flat = at::Tensor();
    f.stage = Flight::Stage::kDone;
    return;
  }
  // Bounded receive buffers: the oldest reduce-scatters finish first.
  const at::ScalarType wire = options_.bf16_wire ? at::kBFloat16 : bucket.dtype;
  const int64_t receives = bucket.padded() * int64_t(c10::elementSize(wire));
  for (size_t oldest = 0;
       oldest < b && reducing_bytes_ + receives > options_.reduce_bytes_in_flight; ++oldest)
    if (flights_[oldest].stage == Flight::Stage::kReducing) finish_reduce(oldest);
  f.reduce.emplace(*bucket.comm, f.flat, wire);
  reducing_bytes_ += receives;
  peak_reducing_bytes_ = std::max(peak_reducing_bytes_, reducing_bytes_);
  f.stage = Flight::Stage::kReducing;
}

void GradientSync::finish_reduce(size_t b) {
  Flight& f = flights_[b];
  f.chunk = f.reduce->finish();
  f.reduce.reset();
  const GradBucket& bucket = buckets_[b];
  reducing_bytes_ -= bucket.padded() *
                     int64_t(c10::elementSize(options_.bf16_wire ? at::kBFloat16 : bucket.dtype));
  f.chunk.mul_(scale_);
  f.stage = options_.shard ? Flight::Stage::kDone : Flight::Stage::kReduced;
  if (options_.shard) f.flat = at::Tensor();
}

void GradientSync::advance(bool block) {
  for (size_t b = 0; b < next_start_; ++b) {
    Flight& f = flights_[b];
    if (f.stage == Flight::Stage::kReducing && (block || f.reduce->progress())) finish_reduce(b);
    // All-gathers start in bucket order too (on their own communicators), whichever
    // reduce-scatter happens to finish first.
    if (f.stage == Flight::Stage::kReduced && b == next_gather_) {
      f.gather.emplace(*gather_comm(b), f.chunk, f.flat);  // the reduce-scatter is done with flat
      f.stage = Flight::Stage::kGathering;
    }
    if (b == next_gather_ && f.stage != Flight::Stage::kReducing &&
        f.stage != Flight::Stage::kReduced)
      ++next_gather_;
    if (f.stage == Flight::Stage::kGathering && (block || f.gather->progress())) {
      f.gather->wait();  // into the buffer the .grad() view
      f.gather.reset();
      f.flat = at::Tensor();
      f.chunk = at::Tensor();
      f.stage = Flight::Stage::kDone;
    }
  }
}

Communicator* GradientSync::gather_comm(size_t b) {
  return buckets_[b].sharding == Sharding::kExpert ? expert_dp_gather_.get() : world_gather_.get();
}

void GradientSync::synchronize() {
  c10::NoGradGuard no_grad;
  started_during_backward_ = armed_ ? next_start_ : 0;
  armed_ = false;
  while (next_start_ < buckets_.size()) start(next_start_++);
  {
    watchdog::Scope scope("gradient sync of " + std::to_string(buckets_.size()) + " bucket(s)");
    advance(/*block=*/true);
  }
  next_start_ = 0;
  next_gather_ = 0;
  for (Flight& f : flights_) f.stage = Flight::Stage::kIdle;
}

}  // namespace triage
