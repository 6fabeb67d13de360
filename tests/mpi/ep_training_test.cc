// A few AdamW steps of a toy model (replicated input projection -> MoE layer) under
// expert parallelism leave every parameter equal to the same steps on one rank holding
// all experts, in float64 to 1e-10. Each step trains on a fresh global batch; every rank
// takes its contiguous slice, the reference takes the batch of each EP group (the whole
// batch when DP = 1) and averages the groups' losses, as the global balance loss defines.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adamw.h>

#include <cmath>

#include "mpi_test_support.h"
#include "train/grad_sync.h"
#include "train/optimizer.h"
#include "train/sharded_optimizer.h"

namespace triage {
namespace {

using namespace testing_support;

constexpr int64_t kTokensPerRank = 5, kWidth = 4, kExperts = 8, kSteps = 4;
constexpr uint64_t kSeed = 17;

// x -> (x @ w_in) -> MoE; w_in is replicated, seeded identically everywhere.
struct ToyModel {
  at::Tensor w_in;
  MoeLayer moe;

  ToyModel(const MoeConfig& config, Communicator* ep)
      : w_in(at::eye(kWidth, at::kDouble) +
             0.1 * at::randn({kWidth, kWidth}, at::make_generator<at::CPUGeneratorImpl>(kSeed),
                             at::kDouble)),
        moe(config, kWidth, at::kDouble, kSeed, ep) {
    w_in.set_requires_grad(true);
  }

  at::Tensor loss(const at::Tensor& x, const at::Tensor& r) {
    return objective(moe.forward(at::matmul(x, w_in), true), r);
  }

  ParameterList parameters() {
    ParameterList params{{"w_in", w_in}};
    append_parameters(params, "moe", moe.parameters());
    return params;
  }
};

std::vector<at::Tensor> tensors(const ParameterList& params) {
  std::vector<at::Tensor> out;
  for (const auto& p : params) out.push_back(p.tensor);
  return out;
}

TEST(ExpertParallelTraining, AdamWStepsMatchOneRankForEveryParameter) {
  MoeConfig config = ep_moe_config(kExperts, 2);
  config.d_expert = 3;
  config.balance_loss_coef = 0.1;
  config.z_loss_coef = 0.01;
  ProcessGroups groups = groups_for(config);
  const GroupLayout& g = groups.layout;
  const int64_t global_tokens = g.world_size * kTokensPerRank;
  const int64_t group_tokens = g.ep_size * kTokensPerRank;

  ToyModel model(config, groups.ep.get());
  ToyModel reference(config, nullptr);
  // 200-byte buckets spread the gradients over several all-reduces: w_in (128 B) and the
  // gate (256 B, over the limit, alone) make 2 replicated buckets; each of the 3 expert
  // tensors (at least 192 B on any layout here) makes its own: 5 in all.
  GradientSync sync(model.parameters(), *groups.world, *groups.expert_dp, {/*bucket_bytes=*/200});
  ASSERT_EQ(sync.bucket_count(), 5u);
  auto options = torch::optim::AdamWOptions(0.05).weight_decay(0.01);
  torch::optim::AdamW optimizer(tensors(model.parameters()), options);
  torch::optim::AdamW reference_optimizer(tensors(reference.parameters()), options);

  std::vector<at::Tensor> initial;
  for (const auto& p : model.parameters()) initial.push_back(p.tensor.detach().clone());

  for (int64_t step = 0; step < kSteps; ++step) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
    at::Tensor x = at::randn({global_tokens, kWidth}, gen, at::kDouble);
    at::Tensor r = at::randn({global_tokens, kWidth}, gen, at::kDouble);

    sync.zero_gradients();  // the .grad() are the buckets' views: zeroed in place
    at::Tensor loss = model.loss(x.narrow(0, g.world_rank * kTokensPerRank, kTokensPerRank),
                                 r.narrow(0, g.world_rank * kTokensPerRank, kTokensPerRank));
    loss.backward();
    sync.synchronize();
    optimizer.step();
    at::Tensor mean_loss = loss.detach().reshape({1}).clone();
    groups.world->allreduce_sum_(mean_loss);
    mean_loss /= g.world_size;

    reference_optimizer.zero_grad();
    at::Tensor reference_loss = at::zeros({1}, at::kDouble);
    for (int64_t group = 0; group < g.dp_size; ++group)
      reference_loss =
          reference_loss + reference.loss(x.narrow(0, group * group_tokens, group_tokens),
                                          r.narrow(0, group * group_tokens, group_tokens)) /
                               double(g.dp_size);
    reference_loss.backward();
    reference_optimizer.step();

    EXPECT_LT(relative_error(mean_loss, reference_loss.detach()), 1e-10) << "loss at step " << step;
  }

  const int64_t first = model.moe.experts().first_expert(),
                local = model.moe.experts().num_experts();
  ParameterList trained = model.parameters(), expected = reference.parameters();
  ASSERT_EQ(trained.size(), expected.size());
  for (size_t i = 0; i < trained.size(); ++i) {
    at::Tensor want = expected[i].tensor.detach();
    if (trained[i].sharding == Sharding::kExpert) want = want.narrow(0, first, local);
    EXPECT_FALSE(at::equal(trained[i].tensor.detach(), initial[i]))
        << trained[i].name << " never moved";
    EXPECT_LT(relative_error(trained[i].tensor.detach(), want), 1e-10) << trained[i].name;
  }
}

// This rank's slice of a global batch drawn from `seed`: inputs and regression targets.
std::pair<at::Tensor, at::Tensor> batch_slice(const GroupLayout& g, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor x = at::randn({g.world_size * kTokensPerRank, kWidth}, gen, at::kDouble);
  at::Tensor r = at::randn({g.world_size * kTokensPerRank, kWidth}, gen, at::kDouble);
  return {x.narrow(0, g.world_rank * kTokensPerRank, kTokensPerRank),
          r.narrow(0, g.world_rank * kTokensPerRank, kTokensPerRank)};
}

MoeConfig toy_config() {
  MoeConfig config = ep_moe_config(kExperts, 2);
  config.d_expert = 3;
  config.balance_loss_coef = 0.1;
  config.z_loss_coef = 0.01;
  return config;
}

TEST(ExpertParallelTraining, SyncStartedDuringBackwardGivesTheBlockingSumsBitwise) {
  const MoeConfig config = toy_config();
  ProcessGroups groups = groups_for(config);
  ToyModel overlapped(config, groups.ep.get()), blocking(config, groups.ep.get());
  GradientSync overlapped_sync(overlapped.parameters(), *groups.world, *groups.expert_dp, {200});
  GradientSync blocking_sync(blocking.parameters(), *groups.world, *groups.expert_dp, {200});
  const auto [x, r] = batch_slice(groups.layout, 1000);

  overlapped_sync.start_during_backward();
  overlapped.loss(x, r).backward();
  overlapped_sync.synchronize();
  blocking.loss(x, r).backward();
  blocking_sync.synchronize();

  // Every bucket started from backward's own hooks, none from synchronize().
  EXPECT_EQ(overlapped_sync.started_during_backward(), overlapped_sync.bucket_count());
  ParameterList a = overlapped.parameters(), b = blocking.parameters();
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(at::equal(a[i].tensor.grad(), b[i].tensor.grad())) << a[i].name;
}

TEST(ExpertParallelTraining, BoundedReduceScattersInFlightGiveTheSameSumsBitwise) {
  // Buckets of at most 200 bytes (25 float64s, 5 buckets); a bound of one bucket's bytes
  // lets one reduce-scatter at a time receive, where unbounded all five may.
  const MoeConfig config = toy_config();
  ProcessGroups groups = groups_for(config);
  ToyModel bounded(config, groups.ep.get()), free(config, groups.ep.get());
  GradSyncOptions one_at_a_time{200};
  one_at_a_time.reduce_bytes_in_flight = 1;
  GradientSync bounded_sync(bounded.parameters(), *groups.world, *groups.expert_dp, one_at_a_time);
  GradientSync free_sync(free.parameters(), *groups.world, *groups.expert_dp, {200});
  const auto [x, r] = batch_slice(groups.layout, 1000);
  bounded_sync.start_during_backward();
  bounded.loss(x, r).backward();
  bounded_sync.synchronize();
  free_sync.start_during_backward();
  free.loss(x, r).backward();
  free_sync.synchronize();

  int64_t largest_bucket = 0;
  for (const GradBucket& bucket : bounded_sync.buckets())
    if (bucket.comm->size() > 1) largest_bucket = std::max(largest_bucket, bucket.padded() * 8);
  EXPECT_LE(bounded_sync.peak_reducing_bytes(), largest_bucket);
  ParameterList a = bounded.parameters(), b = free.parameters();
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(at::equal(a[i].tensor.grad(), b[i].tensor.grad())) << a[i].name;
}

TEST(ExpertParallelTraining, GradientsThatTravelAreTheBucketsViewsAndZeroInPlace) {
  const MoeConfig config = toy_config();
  ProcessGroups groups = groups_for(config);
  ToyModel model(config, groups.ep.get());
  GradientSync sync(model.parameters(), *groups.world, *groups.expert_dp, {200});
  const ParameterList params = model.parameters();
  // Buckets of a group of one rank stay home: their gradients are autograd's own.
  std::vector<char> travels(params.size(), 0);
  for (const GradBucket& bucket : sync.buckets())
    for (size_t param : bucket.params) travels[param] = bucket.comm->size() > 1;
  std::vector<const void*> storage;
  for (size_t i = 0; i < params.size(); ++i)
    storage.push_back(travels[i] ? params[i].tensor.grad().data_ptr() : nullptr);
  const auto [x, r] = batch_slice(groups.layout, 1000);
  model.loss(x, r).backward();
  sync.synchronize();
  sync.zero_gradients();
  for (size_t i = 0; i < params.size(); ++i) {
    if (!travels[i]) {
      EXPECT_FALSE(params[i].tensor.grad().defined()) << params[i].name;
      continue;
    }
    EXPECT_EQ(params[i].tensor.grad().data_ptr(), storage[i]) << params[i].name;
    EXPECT_EQ(params[i].tensor.grad().abs().sum().item<double>(), 0.0) << params[i].name;
  }
}

TEST(ExpertParallelTraining, Bf16WireSumsWithinBf16Rounding) {
  const MoeConfig config = toy_config();
  ProcessGroups groups = groups_for(config);
  ToyModel narrow(config, groups.ep.get()), full(config, groups.ep.get());
  GradSyncOptions bf16{200};
  bf16.bf16_wire = true;
  GradientSync narrow_sync(narrow.parameters(), *groups.world, *groups.expert_dp, bf16);
  GradientSync full_sync(full.parameters(), *groups.world, *groups.expert_dp, {200});
  const auto [x, r] = batch_slice(groups.layout, 1000);
  narrow.loss(x, r).backward();
  narrow_sync.synchronize();
  full.loss(x, r).backward();
  full_sync.synchronize();
  // Each rank's addend is rounded to 8 significant bits once (relative error <= 2^-9); a
  // sum of W such addends is off by at most 2^-9 of the sum of their magnitudes.
  ParameterList a = narrow.parameters(), b = full.parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    const at::Tensor error = (a[i].tensor.grad() - b[i].tensor.grad()).abs().max();
    const at::Tensor bound = b[i].tensor.grad().abs().max() * groups.layout.world_size / 512.0;
    EXPECT_LE(error.item<double>(), bound.item<double>() + 1e-300) << a[i].name;
  }
}

// ZeRO-1 against the unsharded AdamW the trainer uses: 50 steps of the same batches, with
// gradient clipping active, leave every parameter (and every step's gradient norm) equal to
// 1e-12 in float64, on every layout this test runs.
TEST(ExpertParallelTraining, ShardedAdamWFollowsUnshardedAdamWFor50Steps) {
  const MoeConfig config = toy_config();
  ProcessGroups groups = groups_for(config);
  const GroupLayout& g = groups.layout;
  ToyModel sharded_model(config, groups.ep.get()), plain_model(config, groups.ep.get());
  TrainConfig train;
  train.lr = 0.02;
  train.weight_decay = 0.1;
  constexpr double kMaxNorm = 0.05;

  GradSyncOptions shard{200};
  shard.shard = true;
  GradientSync sharded_sync(sharded_model.parameters(), *groups.world, *groups.expert_dp, shard);
  ShardedAdamW sharded(sharded_model.parameters(), sharded_sync, train,
                       sharded_model.moe.experts().first_expert());
  GradientSync plain_sync(plain_model.parameters(), *groups.world, *groups.expert_dp, {200});
  ParameterList plain_params = plain_model.parameters();
  auto plain = make_optimizer(plain_params, train);

  int clipped = 0;
  for (int64_t step = 0; step < 50; ++step) {
    const auto [x, r] = batch_slice(g, 2000 + uint64_t(step));
    sharded_sync.zero_gradients();
    sharded_sync.start_during_backward();
    sharded_model.loss(x, r).backward();
    sharded_sync.synchronize();
    const double sharded_norm = sharded.clip_gradients(*groups.world, kMaxNorm);
    sharded.step();

    plain_sync.zero_gradients();
    plain_model.loss(x, r).backward();
    plain_sync.synchronize();
    const double plain_norm = clip_gradients(plain_params, *groups.ep, kMaxNorm);
    plain->step();

    EXPECT_NEAR(sharded_norm, plain_norm, 1e-12 * plain_norm) << "step " << step;
    clipped += plain_norm > kMaxNorm;
  }
  EXPECT_GT(clipped, 0) << "the clip never acted; lower kMaxNorm";
  ParameterList trained = sharded_model.parameters();
  for (size_t i = 0; i < trained.size(); ++i)
    EXPECT_LT(relative_error(trained[i].tensor.detach(), plain_params[i].tensor.detach()), 1e-12)
        << trained[i].name;

  // Two float64 moments of 1/W of the replicated elements and 1/DP of this rank's expert
  // elements, give or take the padding that rounds each bucket up to whole chunks (fewer
  // than one element per bucket per rank).
  double replicated = 0, experts = 0;
  for (const auto& p : sharded_model.parameters())
    (p.sharding == Sharding::kExpert ? experts : replicated) += double(p.tensor.numel());
  const double share = replicated / g.world_size + experts / g.dp_size;
  const double padding = double(sharded_sync.bucket_count());
  EXPECT_GE(double(sharded.state_bytes()), 2 * 8 * share);
  EXPECT_LE(double(sharded.state_bytes()), 2 * 8 * (share + padding));
}

}  // namespace
}  // namespace triage
