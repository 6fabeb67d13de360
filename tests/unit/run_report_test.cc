// The run's banner and summary: parameters counted once per expert shard, throughput
// averaged over steps, held-out figures and the before/after specialisation included.
#include <gtest/gtest.h>

#include "train/run_report.h"

namespace triage {
namespace {

StepMetrics step(int64_t number, double loss, double tokens_per_s) {
  StepMetrics m;
  m.step = number;
  m.loss = loss;
  m.tokens_per_s = tokens_per_s;
  return m;
}

TEST(RunReport, BannerCountsEachExpertShardOncePerEpRank) {
  Config config;
  GroupLayout layout;
  layout.world_size = 4;
  layout.ep_size = 2;
  layout.dp_size = 2;
  // This rank: 10 replicated values and 2 x 3 of its experts' values.
  const ParameterList parameters{{"gate", at::zeros({10})},
                                 {"experts.w", at::zeros({2, 3}), Sharding::kExpert}};
  Dataset data;
  data.source = "family files";
  const std::string banner =
      start_banner({config, layout, "", {}, parameters, /*moe_layers=*/1, data, 0, 0});
  // The model holds 10 + 2 ranks x 6 = 22; each rank 16.
  EXPECT_NE(banner.find("22 parameters (12 in experts, 16 on each rank)"), std::string::npos)
      << banner;
  EXPECT_NE(banner.find("expert-parallel 2 x data-parallel 2"), std::string::npos) << banner;
  EXPECT_EQ(banner.find("resumed"), std::string::npos) << banner;
}

TEST(RunReport, BannerSaysWhereAResumedRunContinues) {
  Config config;
  GroupLayout layout;
  Dataset data;
  const std::string banner = start_banner({config, layout, "", {}, {}, 0, data, 40, 640});
  EXPECT_NE(banner.find("resumed at step 40 (640 sequences seen)"), std::string::npos) << banner;
}

TEST(RunReport, SummaryAveragesThroughputAndKeepsFirstAndLastLoss) {
  const std::vector<StepMetrics> history{step(1, 3.0, 100), step(2, 2.5, 300), step(3, 2.0, 200)};
  const std::vector<std::string> labels;
  const nlohmann::json json = summary_json({3, history, nullptr, nullptr, labels, 12.5});
  EXPECT_EQ(json["steps"], 3);
  EXPECT_DOUBLE_EQ(json["mean_tokens_per_s"].get<double>(), 200.0);
  EXPECT_DOUBLE_EQ(json["first_loss"].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(json["last_loss"].get<double>(), 2.0);
  EXPECT_FALSE(json.contains("eval"));
  const std::string text = summary_text({3, history, nullptr, nullptr, labels, 12.5});
  EXPECT_NE(text.find("steps 1-3 in 12 s, 200 tokens/s"), std::string::npos) << text;
}

TEST(RunReport, SummaryShowsSpecialisationBeforeAndAfterTraining) {
  EvalMetrics before, after;
  before.nmi = {0.25};
  after.nmi = {0.75};
  after.tables = {ContingencyTable{{{3, 0}, {0, 2}}}};
  const std::vector<StepMetrics> history{step(1, 1.0, 1)};
  const std::vector<std::string> labels{"globin", "kinase"};
  const RunEnd run{1, history, &before, &after, labels, 1.0};
  EXPECT_TRUE(summary_json(run).contains("eval_before_training"));
  const std::string text = summary_text(run);
  EXPECT_NE(text.find("before -> after training: 0.25 -> 0.75"), std::string::npos) << text;
  EXPECT_NE(text.find("globin"), std::string::npos) << text;
}

}  // namespace
}  // namespace triage
