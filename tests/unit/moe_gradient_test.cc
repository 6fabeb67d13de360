// Autograd gradients of the MoE layer against central finite differences in float64,
// for the input, the gate and every expert weight tensor. The objective is
//   L = sum(y * R) + balance_loss + z_loss
// with a fixed random R, so every output element and both auxiliary losses contribute.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "moe/moe_layer.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;

// Step 1e-6: truncation error ~h^2 * f''' ~ 1e-12, rounding ~ 1e-16 / h ~ 1e-10; a
// tolerance of 1e-7 leaves a wide margin while still catching any missing gradient term.
constexpr double kStep = 1e-6, kTolerance = 1e-7;

double objective(MoeLayer& layer, const at::Tensor& x, const at::Tensor& r) {
  MoeOutput out = layer.forward(x, true);
  return ((out.y * r).sum() + out.balance_loss + out.z_loss).item<double>();
}

// Largest |autograd - finite difference| over every element of `tensor`.
double worst_gradient_error(MoeLayer& layer, const at::Tensor& x, const at::Tensor& r,
                            at::Tensor tensor, const at::Tensor& autograd) {
  c10::NoGradGuard no_grad;
  at::Tensor flat = tensor.view({-1});
  at::Tensor expected = autograd.reshape({-1});
  double worst = 0;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double original = flat[i].item<double>();
    flat[i] = original + kStep;
    const double up = objective(layer, x, r);
    flat[i] = original - kStep;
    const double down = objective(layer, x, r);
    flat[i] = original;
    const double numeric = (up - down) / (2 * kStep);
    worst = std::max(worst, std::abs(numeric - expected[i].item<double>()));
  }
  return worst;
}

// (score function, drop policy or "none", expert type)
using GradientCase = std::tuple<std::string, std::string, std::string>;

class GradientsMatchFiniteDifferences : public testing::TestWithParam<GradientCase> {};

TEST_P(GradientsMatchFiniteDifferences, ForInputGateAndEveryExpertWeight) {
  auto [score_function, drops, expert_type] = GetParam();
  MoeConfig config = moe_config(4, 2);
  config.score_function = choice_from<ScoreFunction>(score_function);
  config.expert_type = choice_from<ExpertType>(expert_type);
  config.d_expert = 3;
  config.balance_loss_coef = 0.1;
  config.z_loss_coef = 0.01;
  config.capacity_factor = drops == "none" ? 0.0 : 0.75;  // capacity 3 of 12 assignments/4
  config.min_capacity = 1;
  if (drops != "none") config.drop_policy = choice_from<DropPolicy>(drops);

  at::Generator gen = generator(21);
  MoeLayer layer(config, 4, at::kDouble, /*seed=*/3);
  at::Tensor x = at::randn({6, 4}, gen, at::kDouble).set_requires_grad(true);
  at::Tensor r = at::randn({6, 4}, gen, at::kDouble);

  MoeOutput out = layer.forward(x, true);
  if (drops != "none") ASSERT_GT(out.stats.dropped, 0);
  ((out.y * r).sum() + out.balance_loss + out.z_loss).backward();

  EXPECT_LT(worst_gradient_error(layer, x, r, x.detach(), x.grad()), kTolerance) << "input";
  for (const auto& p : layer.parameters()) {
    ASSERT_TRUE(p.tensor.grad().defined()) << p.name;
    EXPECT_LT(worst_gradient_error(layer, x, r, p.tensor.detach(), p.tensor.grad()), kTolerance)
        << p.name;
  }
}

INSTANTIATE_TEST_SUITE_P(MoeLayer, GradientsMatchFiniteDifferences,
                         testing::Combine(testing::Values("softmax", "sigmoid"),
                                          testing::Values("none", "position", "score"),
                                          testing::Values("gelu", "swiglu")),
                         [](const testing::TestParamInfo<GradientCase>& info) {
                           return std::get<0>(info.param) + "_drop_" + std::get<1>(info.param) +
                                  "_" + std::get<2>(info.param);
                         });

}  // namespace
}  // namespace triage
