// Routing replay (moe.routing_override replay:RUN_DIR, bench --routing replay:RUN_DIR):
// loads come from a run's metrics.jsonl, one step at a time.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "moe/routing_override.h"
#include "test_support.h"

namespace triage {
namespace {

std::string run_with_metrics(const std::string& name, const std::string& lines) {
  const std::string dir = testing::TempDir() + name;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/metrics.jsonl") << lines;
  return dir;
}

TEST(ReplayRouting, LoadsTheFirstLayersCountsOfEachTrainingStepAndSkipsEvaluations) {
  const std::string dir =
      run_with_metrics("replay_ok", R"({"step":1,"tokens_per_expert":[[3,1],[9,9]]}
{"eval":true,"step":1,"lm_loss":2.0}
{"step":2,"tokens_per_expert":[[0,4],[1,1]]}
)");
  const auto loads = load_replay_loads(dir, 2);
  ASSERT_EQ(loads.size(), 2u);
  EXPECT_EQ(loads[0], (std::vector<double>{3, 1}));
  EXPECT_EQ(loads[1], (std::vector<double>{0, 4}));
}

TEST(ReplayRouting, ReadsRunsThatNamedTheCountsExpertTokens) {
  const std::string dir = run_with_metrics("replay_old_key", R"({"step":1,"expert_tokens":[[5,2]]})"
                                                             "\n");
  EXPECT_EQ(load_replay_loads(dir, 2), (std::vector<std::vector<double>>{{5, 2}}));
}

TEST(ReplayRouting, AnotherNumberOfExpertsIsRefusedWithFileAndLine) {
  const std::string dir =
      run_with_metrics("replay_wrong_experts", R"({"step":1,"tokens_per_expert":[[3,1,2]]})"
                                               "\n");
  try {
    load_replay_loads(dir, 2);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              dir +
                  "/metrics.jsonl:1: tokens_per_expert has 3 experts per layer; expected 2, "
                  "the experts being routed");
  }
}

TEST(ReplayRouting, AMissingRunFolderIsRefusedNamingTheFile) {
  EXPECT_THROW(load_replay_loads("/nonexistent-run", 2), Error);
}

TEST(ReplayRouting, DrawsEachExpertInProportionToTheReplayedStepsLoad) {
  RoutingOverride rule;
  rule.kind = RoutingOverride::Kind::kReplay;
  rule.replay_loads = std::make_shared<const std::vector<std::vector<double>>>(
      std::vector<std::vector<double>>{{3, 1}, {0, 1}});
  const int64_t tokens = 20000;
  at::Tensor chosen = at::zeros({tokens, 1}, at::kLong);
  at::Tensor scores = at::full({tokens, 2}, 0.5, at::kDouble);
  const double step0 =
      override_routing(rule, chosen, scores, 0, 5, 1, 0).eq(0).sum().item<double>() / tokens;
  EXPECT_NEAR(step0, 0.75, 0.02);  // 3 of 4; binomial sd 0.003
  const double step1 =
      override_routing(rule, chosen, scores, 0, 5, 1, 1).eq(0).sum().item<double>() / tokens;
  EXPECT_EQ(step1, 0.0);  // expert 0 had no load that step
  const double step2 =
      override_routing(rule, chosen, scores, 0, 5, 1, 2).eq(0).sum().item<double>() / tokens;
  EXPECT_EQ(step2, step0);  // steps cycle
}

}  // namespace
}  // namespace triage
