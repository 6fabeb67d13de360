// The expert-parallel MoE layer computes exactly what one rank holding every expert
// computes (float64, 1e-10 relative): outputs, input gradients, the gate gradient summed
// over the world, and each expert's gradient summed over its expert-data-parallel group.
// Every rank builds the same global batch and takes its contiguous slice of it.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "moe/moe_layer.h"
#include "mpi_test_support.h"

namespace triage {
namespace {

using namespace testing_support;

constexpr int64_t kTokensPerRank = 6, kWidth = 6, kExperts = 8;
constexpr uint64_t kSeed = 9;

double relative_error(const at::Tensor& actual, const at::Tensor& expected) {
  double scale = std::max(1.0, expected.abs().max().item<double>());
  return (actual - expected).abs().max().item<double>() / scale;
}

MoeConfig layer_config(const std::string& score_function, int64_t k, double capacity_factor) {
  MoeConfig config = ep_moe_config(kExperts, k);
  config.score_function = score_function;
  config.d_expert = 5;
  config.capacity_factor = capacity_factor;
  config.min_capacity = 1;
  config.balance_loss_coef = 0;  // the global balance-loss mode is not built yet
  config.z_loss_coef = 0;
  return config;
}

struct Batch {
  at::Tensor x_GD, r_GD;  // the global batch and the output weights of the objective
};

Batch global_batch(int world_size) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(42);
  return {at::randn({world_size * kTokensPerRank, kWidth}, gen, at::kDouble),
          at::randn({world_size * kTokensPerRank, kWidth}, gen, at::kDouble)};
}

// Runs the EP layer on this rank's slice and the one-rank reference on `shards` equal
// parts of the global batch (1 = the whole batch at once; world = per-rank capacity),
// then compares everything.
void expect_ep_matches_reference(const MoeConfig& config, bool reference_per_rank) {
  ProcessGroups groups = groups_for(config);
  const GroupLayout& g = groups.layout;
  Batch batch = global_batch(g.world_size);
  const int64_t first_token = g.world_rank * kTokensPerRank;

  MoeLayer ep_layer(config, kWidth, at::kDouble, kSeed, groups.ep.get());
  at::Tensor x = batch.x_GD.narrow(0, first_token, kTokensPerRank).clone().set_requires_grad(true);
  at::Tensor y = ep_layer.forward(x, true).y;
  (y * batch.r_GD.narrow(0, first_token, kTokensPerRank)).sum().backward();

  MoeLayer reference(config, kWidth, at::kDouble, kSeed);
  at::Tensor x_ref = batch.x_GD.clone().set_requires_grad(true);
  const int64_t shards = reference_per_rank ? g.world_size : 1;
  const int64_t shard_tokens = x_ref.size(0) / shards;
  std::vector<at::Tensor> y_ref_parts;
  for (int64_t s = 0; s < shards; ++s) {
    at::Tensor part = reference.forward(x_ref.narrow(0, s * shard_tokens, shard_tokens), true).y;
    (part * batch.r_GD.narrow(0, s * shard_tokens, shard_tokens)).sum().backward();
    y_ref_parts.push_back(part.detach());
  }
  at::Tensor y_ref = at::cat(y_ref_parts).narrow(0, first_token, kTokensPerRank);

  EXPECT_LT(relative_error(y.detach(), y_ref), 1e-10) << "output";
  EXPECT_LT(relative_error(x.grad(), x_ref.grad().narrow(0, first_token, kTokensPerRank)), 1e-10)
      << "input gradient";

  at::Tensor gate_grad = ep_layer.router().gate_ED().grad().clone();
  groups.world->allreduce_sum_(gate_grad);
  EXPECT_LT(relative_error(gate_grad, reference.router().gate_ED().grad()), 1e-10) << "gate";

  auto ep_params = ep_layer.experts().parameters();
  auto ref_params = reference.experts().parameters();
  const int64_t first = ep_layer.experts().first_expert(), local = ep_layer.experts().num_experts();
  ASSERT_EQ(local, kExperts / g.ep_size);
  for (size_t i = 0; i < ep_params.size(); ++i) {
    EXPECT_TRUE(at::equal(ep_params[i].tensor.detach(),
                          ref_params[i].tensor.detach().narrow(0, first, local)))
        << ep_params[i].name << ": initial weights differ from the reference's experts";
    at::Tensor grad = ep_params[i].tensor.grad().clone();
    groups.expert_dp->allreduce_sum_(grad);
    EXPECT_LT(relative_error(grad, ref_params[i].tensor.grad().narrow(0, first, local)), 1e-10)
        << ep_params[i].name << " gradient";
  }
}

TEST(ExpertParallelLayer, MatchesOneRankOnWholeBatchSoftmaxTopTwoDropless) {
  expect_ep_matches_reference(layer_config("softmax", 2, 0.0), false);
}

TEST(ExpertParallelLayer, MatchesOneRankOnWholeBatchSigmoidTopFourDropless) {
  expect_ep_matches_reference(layer_config("sigmoid", 4, 0.0), false);
}

TEST(ExpertParallelLayer, WithDropsMatchesOneRankApplyingCapacityPerRankShard) {
  MoeConfig config = layer_config("softmax", 2, 0.5);  // capacity ceil(0.5*6*2/8) = 1
  config.drop_policy = "score";
  expect_ep_matches_reference(config, true);
}

}  // namespace
}  // namespace triage
