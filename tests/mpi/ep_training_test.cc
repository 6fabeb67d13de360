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
  GradientSync sync(model.parameters(), *groups.world, *groups.expert_dp, /*bucket_bytes=*/200);
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

    optimizer.zero_grad();
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

}  // namespace
}  // namespace triage
