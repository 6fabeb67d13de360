// The grouped-GEMM expert path gives the loop path's outputs and gradients, whatever the
// order of the runs (after the exchange one expert owns several runs, one per source).
#include <gtest/gtest.h>

#include <torch/optim/adamw.h>

#include "moe/expert_math.h"
#include "moe/experts.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;

constexpr int64_t kExperts = 3, kWidth = 8, kHidden = 16;  // 16-byte aligned float32 rows

struct PathResult {
  at::Tensor y, grad_x;
  std::vector<at::Tensor> grad_weights;
};

PathResult run_path(ExpertType type, ExpertGemm gemm, const std::vector<ExpertRun>& runs,
                    int64_t rows) {
  Experts experts(0, kExperts, kWidth, kHidden, type, at::kFloat, /*seed=*/5, gemm);
  at::Generator gen = generator(9);
  at::Tensor x = at::randn({rows, kWidth}, gen, at::kFloat).set_requires_grad(true);
  at::Tensor upstream = at::randn({rows, kWidth}, gen, at::kFloat);
  PathResult r;
  r.y = experts.forward(x, runs);
  r.y.backward(upstream);
  r.grad_x = x.grad();
  for (const auto& p : experts.parameters()) r.grad_weights.push_back(p.tensor.grad());
  return r;
}

class ExpertGemmPaths : public testing::TestWithParam<ExpertType> {};

TEST_P(ExpertGemmPaths, GroupedMatchesLoopForInterleavedRuns) {
  // Two source ranks' runs: experts 0, 1, 2 then 0, 2 again (expert 1 has none the second time).
  const std::vector<ExpertRun> runs = {{0, 3}, {1, 2}, {2, 4}, {0, 1}, {2, 2}};
  PathResult loop = run_path(GetParam(), ExpertGemm::kLoop, runs, 12);
  PathResult grouped = run_path(GetParam(), ExpertGemm::kGrouped, runs, 12);
  // float32 products summed in a different order: agreement to a few ulps of the values.
  EXPECT_TRUE(at::allclose(grouped.y, loop.y, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(grouped.grad_x, loop.grad_x, 1e-5, 1e-6));
  ASSERT_EQ(grouped.grad_weights.size(), loop.grad_weights.size());
  for (size_t i = 0; i < loop.grad_weights.size(); ++i)
    EXPECT_TRUE(at::allclose(grouped.grad_weights[i], loop.grad_weights[i], 1e-5, 1e-6))
        << "weight " << i;
}

TEST_P(ExpertGemmPaths, GroupedHandlesAnExpertWithoutRows) {
  const std::vector<ExpertRun> runs = {{2, 5}};
  PathResult loop = run_path(GetParam(), ExpertGemm::kLoop, runs, 5);
  PathResult grouped = run_path(GetParam(), ExpertGemm::kGrouped, runs, 5);
  EXPECT_TRUE(at::allclose(grouped.y, loop.y, 1e-5, 1e-6));
}

// Under train.precision bf16 the rows arrive in bf16 and both GEMM paths take bf16
// weights (ATen's matmuls and _grouped_mm refuse mixed dtypes, so a bf16 output means bf16
// operands). The float32 weights are cast once per update: two micro-batches share the
// cast, their gradients add up in the float32 .grad, and an optimizer step brings a new cast.
TEST_P(ExpertGemmPaths, Bf16RowsMeetBf16WeightsCastOncePerOptimizerStep) {
  for (ExpertGemm gemm : {ExpertGemm::kLoop, ExpertGemm::kGrouped}) {
    SCOPED_TRACE(gemm == ExpertGemm::kLoop ? "loop" : "grouped");
    Experts experts(0, kExperts, kWidth, kHidden, GetParam(), at::kFloat, /*seed=*/5, gemm);
    const std::vector<ExpertRun> runs = {{0, 3}, {1, 2}, {2, 4}};
    at::Generator gen = generator(9);
    const at::Tensor x = at::randn({9, kWidth}, gen, at::kFloat).to(at::kBFloat16);
    const at::Tensor upstream = at::randn({9, kWidth}, gen, at::kFloat).to(at::kBFloat16);
    const ExpertWeights first = experts.weights(at::kBFloat16);
    EXPECT_EQ(first.w_in_EDH.scalar_type(), at::kBFloat16);
    EXPECT_EQ(first.w_out_EHD.scalar_type(), at::kBFloat16);

    at::Tensor y = experts.forward(x, runs);
    EXPECT_EQ(y.scalar_type(), at::kBFloat16);
    y.backward(upstream);
    const ParameterList params = experts.parameters();
    std::vector<at::Tensor> one_micro_batch;
    for (const auto& p : params) {
      EXPECT_EQ(p.tensor.grad().scalar_type(), at::kFloat) << p.name;
      one_micro_batch.push_back(p.tensor.grad().clone());
    }
    experts.forward(x, runs).backward(upstream);  // the step's second micro-batch
    EXPECT_EQ(experts.weights(at::kBFloat16).w_in_EDH.data_ptr(), first.w_in_EDH.data_ptr())
        << "cast again within a step";
    for (size_t i = 0; i < params.size(); ++i)
      EXPECT_TRUE(at::equal(params[i].tensor.grad(), 2 * one_micro_batch[i])) << params[i].name;

    std::vector<at::Tensor> tensors;
    for (const auto& p : params) tensors.push_back(p.tensor);
    torch::optim::AdamW optimizer(tensors, torch::optim::AdamWOptions(0.1));
    optimizer.step();
    const ExpertWeights next = experts.weights(at::kBFloat16);
    EXPECT_FALSE(at::equal(next.w_in_EDH, first.w_in_EDH)) << "kept a stale cast after a step";
    EXPECT_TRUE(at::equal(next.w_in_EDH, params[0].tensor.detach().to(at::kBFloat16)));
  }
}

INSTANTIATE_TEST_SUITE_P(Types, ExpertGemmPaths,
                         testing::Values(ExpertType::kGelu, ExpertType::kSwiglu),
                         [](const auto& info) {
                           return info.param == ExpertType::kGelu ? "gelu" : "swiglu";
                         });

TEST(ExpertGemm, AutoTakesTheLoopOnTheCpu) {
  Experts experts(0, kExperts, kWidth, kHidden, ExpertType::kSwiglu, at::kFloat, 5,
                  ExpertGemm::kAuto);
  EXPECT_FALSE(experts.uses_grouped_gemm(at::zeros({4, kWidth})));
}

TEST(ExpertGemm, GroupedRefusesUnalignedShapesNamingTheKey) {
  Experts experts(0, kExperts, 6, kHidden, ExpertType::kSwiglu, at::kFloat, 5,
                  ExpertGemm::kGrouped);
  EXPECT_EQ(
      error_of([&] {
        experts.uses_grouped_gemm(at::zeros({4, 6}));
      }),
      "moe.expert_gemm = grouped: expected float32/bfloat16 and d_model, d_expert multiples of 4 "
      "(got Float, 6, 16)");
}

TEST(ExpertGemm, GroupedRefusesFloat64) {
  Experts experts(0, kExperts, kWidth, kHidden, ExpertType::kGelu, at::kDouble, 5,
                  ExpertGemm::kGrouped);
  EXPECT_NE(error_of([&] { experts.uses_grouped_gemm(at::zeros({4, kWidth}, at::kDouble)); }), "");
}

}  // namespace
}  // namespace triage
