// The grouped-GEMM expert path gives the loop path's outputs and gradients, whatever the
// order of the runs (after the exchange one expert owns several runs, one per source).
#include <gtest/gtest.h>

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
