// Checks across whole `triage train` runs, which CTest starts first (fixtures) and whose
// metrics.jsonl files live under TRIAGE_E2E_RUNS:
//   layouts   the tiny config in float64 on 1, 2 and 4 ranks (EP = ranks) and 4 ranks at
//             EP 2: every step's losses and gradient norm agree to 1e-9 relative
//   resume    a run stopped after 3 steps and resumed equals an uninterrupted run, bitwise
//   reshard   a checkpoint saved at EP 4 and resumed at EP 2 and EP 1 continues the EP-4 run
//   groups    a group-limited model trained at EP 4, resumed at EP 2 and EP 1: same curve,
//             and `triage logits` of the final checkpoints equal in float64
//   accumulate  2 micro-batches of 4 sequences per step train like 1 batch of 8
//   sharded   train.shard_optimizer on every layout follows the unsharded run to 1e-12; a
//             sharded checkpoint resumes bitwise at its layout, and at another DP size or
//             unsharded on the curve; an unsharded checkpoint resumes sharded
//   blocking  the gradient sync started after backward equals the one started during it
//   recompute train.recompute experts trains bitwise as keeping the activations
//   tokens    the tiny model on a BPE-tokenized token file at EP 1, 2 and 4 follows one curve
//             (1e-9), learns, and a run stopped and resumed equals the whole run bitwise
//   multinode the tiny config on 2 virtual hosts over TCP follows the one-host curve (run by
//             the multinode test in tests/multinode, not on its own)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

using nlohmann::json;

std::string runs_dir() {
  const char* dir = std::getenv("TRIAGE_E2E_RUNS");
  return dir ? dir : "e2e";
}

// The training records (not evals) of a run, in step order.
std::vector<json> steps_of(const std::string& run) {
  const std::string path = runs_dir() + "/" + run + "/metrics.jsonl";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing " << path;
  std::vector<json> records;
  for (std::string line; std::getline(in, line);) {
    json record = json::parse(line);
    if (!record.contains("eval")) records.push_back(record);
  }
  return records;
}

double relative(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

void expect_same_curve(const std::string& run, const std::string& reference, double tolerance,
                       int64_t from_step = 1) {
  std::vector<json> a = steps_of(run), b = steps_of(reference);
  ASSERT_EQ(a.size(), b.size()) << run << " vs " << reference;
  ASSERT_FALSE(a.empty());
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i]["step"].get<int64_t>() < from_step) continue;
    for (const char* key : {"loss", "balance_loss", "z_loss", "grad_norm"})
      EXPECT_LT(relative(a[i][key], b[i][key]), tolerance)
          << run << " step " << a[i]["step"] << " " << key << ": " << a[i][key] << " vs "
          << b[i][key];
  }
}

TEST(TrainRuns, LossCurvesAgreeOnEveryExpertParallelLayout) {
  for (const char* run : {"layout_world2_ep2", "layout_world4_ep4", "layout_world4_ep2"})
    expect_same_curve(run, "layout_world1_ep1", 1e-9);
}

TEST(TrainRuns, LossFallsOnTheTinyConfig) {
  std::vector<json> steps = steps_of("layout_world1_ep1");
  ASSERT_GE(steps.size(), 2u);
  EXPECT_LT(steps.back()["loss"].get<double>(), steps.front()["loss"].get<double>());
}

TEST(TrainRuns, ResumedRunEqualsTheUninterruptedRunBitwise) {
  std::vector<json> resumed = steps_of("resume_interrupted"),
                    full = steps_of("resume_uninterrupted");
  ASSERT_EQ(resumed.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i)
    for (const char* key : {"step", "loss", "lm_loss", "class_loss", "balance_loss", "z_loss", "lr",
                            "grad_norm", "dropped_pct", "tokens_per_expert"})
      EXPECT_EQ(resumed[i][key], full[i][key]) << "step " << full[i]["step"] << " " << key;
}

void expect_same_steps_bitwise(const std::string& run, const std::string& reference) {
  std::vector<json> a = steps_of(run), b = steps_of(reference);
  ASSERT_EQ(a.size(), b.size()) << run << " vs " << reference;
  for (size_t i = 0; i < b.size(); ++i)
    for (const char* key : {"step", "loss", "lm_loss", "class_loss", "balance_loss", "z_loss", "lr",
                            "grad_norm", "dropped_pct", "tokens_per_expert"})
      EXPECT_EQ(a[i][key], b[i][key]) << run << " step " << b[i]["step"] << " " << key;
}

TEST(TrainRuns, TokenFileCurvesAgreeOnEveryExpertParallelLayout) {
  for (const char* run : {"tokens_world2_ep2", "tokens_world4_ep4"})
    expect_same_curve(run, "tokens_world1_ep1", 1e-9);
  std::vector<json> steps = steps_of("tokens_world1_ep1");
  ASSERT_GE(steps.size(), 2u);
  EXPECT_LT(steps.back()["lm_loss"].get<double>(), steps.front()["lm_loss"].get<double>());
}

TEST(TrainRuns, TokenFileRunResumesBitwise) {
  expect_same_steps_bitwise("tokens_resumed", "tokens_world2_ep2");
}

TEST(TrainRuns, ShardedOptimizerFollowsTheUnshardedCurveOnEveryLayout) {
  for (const char* layout : {"world1_ep1", "world2_ep2", "world4_ep4", "world4_ep2"})
    expect_same_curve(std::string("sharded_") + layout, std::string("layout_") + layout, 1e-12);
}

TEST(TrainRuns, GradientSyncAfterBackwardEqualsSyncDuringBackwardBitwise) {
  expect_same_steps_bitwise("blocking_sync_world4_ep2", "layout_world4_ep2");
}

TEST(TrainRuns, RecomputedExpertActivationsTrainBitwiseAsKept) {
  expect_same_steps_bitwise("recompute_experts_world4_ep2", "layout_world4_ep2");
}

TEST(TrainRuns, RecomputedBlocksTrainBitwiseAsKept) {
  expect_same_steps_bitwise("recompute_block_world4_ep2", "layout_world4_ep2");
}

TEST(TrainRuns, ShardedCheckpointResumesBitwiseAndAtOtherLayouts) {
  // All resumed from the sharded 4-rank EP-2 run's step-4 checkpoint.
  expect_same_steps_bitwise("sharded_resumed", "sharded_world4_ep2");
  expect_same_curve("sharded_to_dp1", "sharded_world4_ep2", 1e-9, 5);
  expect_same_curve("sharded_to_unsharded_ep4", "sharded_world4_ep2", 1e-9, 5);
}

TEST(TrainRuns, UnshardedCheckpointResumesSharded) {
  expect_same_curve("unsharded_to_sharded_dp1", "layout_world4_ep4", 1e-9, 5);
}

TEST(TrainRuns, CheckpointFromEp4ContinuesAtEp2AndEp1) {
  // Both resumed from the EP-4 run's step-4 checkpoint; the EP-4 run went on uninterrupted.
  expect_same_curve("reshard_to_ep2", "layout_world4_ep4", 1e-9, 5);
  expect_same_curve("reshard_to_ep1", "layout_world4_ep4", 1e-9, 5);
}

TEST(TrainRuns, MultiNodeRunEqualsTheSingleHostRun) {
  // The same reductions in the same order; only the transport differs (TCP between hosts
  // instead of shared memory), and MPI may pick another summation order for it: 1e-12.
  expect_same_curve("multinode_two_hosts", "layout_world4_ep4", 1e-12);
}

// The float64 tensor `name` of a safetensors file (8-byte header length, JSON, raw data).
std::vector<double> stored_doubles(const std::string& path, const std::string& name) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing " << path;
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 8) return {};
  uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= uint64_t(uint8_t(bytes[size_t(i)])) << (8 * i);
  const json entry = json::parse(bytes.substr(8, length)).at(name);
  EXPECT_EQ(entry.at("dtype"), "F64") << path;
  const uint64_t begin = entry["data_offsets"][0], end = entry["data_offsets"][1];
  std::vector<double> values((end - begin) / sizeof(double));
  std::memcpy(values.data(), bytes.data() + 8 + length + begin, end - begin);
  return values;
}

TEST(TrainRuns, GroupLimitedModelResumedAtEp2AndEp1RoutesAsTrained) {
  expect_same_curve("groups_resumed_at_ep2", "groups_source", 1e-9, 5);
  expect_same_curve("groups_resumed_at_ep1", "groups_source", 1e-9, 5);
  const std::vector<double> want =
      stored_doubles(runs_dir() + "/groups_source/logits.safetensors", "logits");
  ASSERT_FALSE(want.empty());
  for (const char* run : {"groups_resumed_at_ep2", "groups_resumed_at_ep1"}) {
    const std::vector<double> got =
        stored_doubles(runs_dir() + "/" + run + "/logits.safetensors", "logits");
    ASSERT_EQ(got.size(), want.size()) << run;
    double worst = 0, largest = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      worst = std::max(worst, std::abs(got[i] - want[i]));
      largest = std::max(largest, std::abs(want[i]));
    }
    EXPECT_LT(worst / largest, 1e-9) << run << ": logits differ from the EP-4 model's";
  }
}

TEST(TrainRuns, AccumulatedMicroBatchesMakeTheSameStepAsOneBatch) {
  expect_same_curve("accumulate_2x4", "accumulate_1x8", 1e-9);
}

void expect_bitwise_same_curve(const std::string& run, const std::string& reference) {
  std::vector<json> a = steps_of(run), b = steps_of(reference);
  ASSERT_EQ(a.size(), b.size()) << run << " vs " << reference;
  for (size_t i = 0; i < b.size(); ++i)
    for (const char* key : {"step", "loss", "lm_loss", "class_loss", "balance_loss", "z_loss", "lr",
                            "grad_norm", "tokens_per_expert"})
      EXPECT_EQ(a[i][key], b[i][key]) << run << " step " << b[i]["step"] << " " << key;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing " << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(TrainRuns, CheckpointKilledMidWriteLeavesThePreviousOneAndResumesBitwise) {
  expect_bitwise_same_curve("checkpoint_killed_by_rank0", "layout_world4_ep4");
  expect_bitwise_same_curve("checkpoint_killed_by_rank1", "layout_world4_ep4");
}

TEST(TrainRuns, PreemptedRunResumesBitwise) {
  expect_bitwise_same_curve("preempt_resumed", "preempt_uninterrupted");
}

TEST(TrainRuns, OverwriteReplacesTheEarlierRun) {
  std::vector<json> steps = steps_of("overwrite_replaces_the_earlier_run");
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps.back()["step"], 3);
  EXPECT_EQ(read_text(runs_dir() + "/overwrite_replaces_the_earlier_run/checkpoints/latest"),
            "step-00000003\n");
  EXPECT_FALSE(std::ifstream(
      runs_dir() + "/overwrite_replaces_the_earlier_run/checkpoints/step-00000008/manifest.json"))
      << "the earlier run's checkpoint survived --overwrite";
}

TEST(TrainRuns, PruningKeepsLatestAndOtherRunsCheckpoints) {
  const std::string run = runs_dir() + "/prune_keeps_latest_and_other_runs";
  EXPECT_EQ(read_text(run + "/left.txt"), "latest\nstep-00000002\nstep-00000006\n");
  EXPECT_EQ(read_text(run + "/checkpoints/latest"), "step-00000006\n");
  json manifest = json::parse(read_text(run + "/checkpoints/step-00000006/manifest.json"));
  EXPECT_EQ(manifest["step"], 6);
  std::vector<json> steps = steps_of("prune_keeps_latest_and_other_runs");
  ASSERT_EQ(steps.size(), 6u)
      << "metrics after step 4 of the first run are replaced by the resumed run's";
}

TEST(TrainRuns, ElasticRunContinuesOnTheCurveOfAResumedRun) {
  const int64_t resumed = std::stoll(read_text(runs_dir() + "/elastic/resumed_from_step"));
  std::vector<json> elastic = steps_of("elastic"), reference = steps_of("elastic-reference");
  ASSERT_EQ(elastic.size(), 300u) << "the elastic run did not reach its last step";
  ASSERT_EQ(reference.size(), size_t(300 - resumed));
  for (size_t i = 0; i < reference.size(); ++i) {
    const json& a = elastic[size_t(resumed) + i];
    ASSERT_EQ(a["step"], reference[i]["step"]);
    for (const char* key : {"loss", "balance_loss", "z_loss", "grad_norm"})
      EXPECT_LT(relative(a[key], reference[i][key]), 1e-12) << "step " << a["step"] << " " << key;
  }
}

TEST(TrainRuns, RoutingOverridesFollowTheOneRankCurveOnEveryLayout) {
  for (const char* rule : {"balanced", "hot", "zipf"})
    for (const char* layout : {"world2_ep2", "world4_ep4", "world4_ep2"})
      expect_same_curve(std::string("override_") + rule + "_" + layout,
                        std::string("override_") + rule + "_world1_ep1", 1e-9);
  // The forced patterns are really there: hot:1:1.0 sends every assignment to expert 1.
  for (const json& step : steps_of("override_hot_world4_ep4"))
    for (const auto& layer : step["tokens_per_expert"]) {
      EXPECT_EQ(layer[0], 0);
      EXPECT_GT(layer[1], 0);
      EXPECT_EQ(layer[2], 0);
      EXPECT_EQ(layer[3], 0);
    }
}

TEST(TrainRuns, RoutingSchemesFollowTheOneRankCurveOnEveryLayout) {
  for (const std::string scheme : {"groups", "sequence_balance", "sequence_routing",
                                   "expert_choice", "jitter", "shazeer", "dropout"})
    for (const char* layout : {"world4_ep4", "world4_ep2"}) {
      // Expert choice picks within one slice per EP group: 2 at EP 2, as the reference told.
      const bool sliced = scheme == "expert_choice" && std::string(layout) == "world4_ep2";
      expect_same_curve("scheme_" + scheme + "_" + layout,
                        "scheme_" + scheme + "_world1_ep1" + (sliced ? "_slices2" : ""), 1e-9);
    }
  expect_same_curve("scheme_expert_choice_world4_ep2_slices1", "scheme_expert_choice_world1_ep1",
                    1e-9);
  // Per EP group every copy of an expert takes exactly its share, so every rank receives as
  // many rows; over the world's batch one copy can take more than the other.
  double worst_world_sliced = 1;
  for (const json& step : steps_of("scheme_expert_choice_world4_ep2")) {
    EXPECT_DOUBLE_EQ(step["received_max_mean"].get<double>(), 1.0) << "step " << step["step"];
  }
  for (const json& step : steps_of("scheme_expert_choice_world4_ep2_slices1"))
    worst_world_sliced = std::max(worst_world_sliced, step["received_max_mean"].get<double>());
  EXPECT_GT(worst_world_sliced, 1.0) << "one slice over 2 EP groups should unbalance a copy";
  // Each scheme is in effect: at step 1 (before any update, the same weights and batch as
  // the plain run) group-limited routing changes the loss, the sequence-wise scope the
  // balance loss.
  const json plain = steps_of("layout_world1_ep1").front();
  EXPECT_GT(relative(steps_of("scheme_groups_world1_ep1").front()["loss"], plain["loss"]), 1e-6);
  EXPECT_GT(relative(steps_of("scheme_sequence_balance_world1_ep1").front()["balance_loss"],
                     plain["balance_loss"]),
            1e-6);
  for (const char* scheme : {"sequence_routing", "expert_choice", "jitter", "shazeer", "dropout"})
    EXPECT_GT(relative(steps_of("scheme_" + std::string(scheme) + "_world1_ep1").front()["loss"],
                       plain["loss"]),
              1e-6)
        << scheme;
}

// The default protein job: some domains are shorter than seq_len 96, so some of each
// batch's 32 x 96 positions are padding (3-5%). Padding is never an assignment: with capacity
// 1.25 the drop share is over the real tokens' assignments (layers x tokens x top_k 2,
// tokens counted from the examples, not by the layer), and dropless every one of them,
// and nothing else, reaches an expert.
TEST(TrainRuns, PaddingNeverReachesTheExpertsOrTheirCounts) {
  constexpr double kTopK = 2, kPositions = 32 * 96;
  for (const std::string run : {"capacity", "dropless"}) {
    const std::vector<json> steps = steps_of("protein_padding_world4_ep4/" + run);
    EXPECT_EQ(steps.size(), 3u) << run;
    for (const json& step : steps) {
      SCOPED_TRACE(run + " step " + step["step"].dump());
      const double tokens = step["tokens"].get<double>();
      ASSERT_GT(tokens, 0);
      EXPECT_LT(tokens, kPositions) << "the batch should hold padding";
      double kept = 0;
      for (const auto& layer : step["tokens_per_expert"])
        for (const auto& n : layer) kept += n.get<double>();
      const double assignments = double(step["tokens_per_expert"].size()) * tokens * kTopK;
      EXPECT_NEAR(step["dropped_pct"].get<double>(), 100.0 * (assignments - kept) / assignments,
                  1e-9);
      if (run == "dropless") EXPECT_EQ(kept, assignments);
    }
  }
}

TEST(TrainRuns, EarlyStoppingKeepsTheBestCheckpoint) {
  const std::string run = runs_dir() + "/early_stop";
  const json summary = json::parse(std::ifstream(run + "/summary.json"));
  EXPECT_TRUE(summary["stopped_early"].get<bool>());
  const int64_t best_step = summary["best"]["step"];
  const int64_t last_step = summary["steps"];
  // Evaluations every 2 steps; patience 2: the run ends 4 steps after its best.
  EXPECT_EQ(last_step, best_step + 4);
  EXPECT_LT(last_step, 8) << "the tiny config's train.steps";
  std::ifstream best_file(run + "/checkpoints/best");
  std::string folder;
  best_file >> folder;
  char expected[32];
  std::snprintf(expected, sizeof expected, "step-%08lld", static_cast<long long>(best_step));
  EXPECT_EQ(folder, expected);
  EXPECT_TRUE(std::ifstream(run + "/checkpoints/" + folder + "/manifest.json").good())
      << "the best checkpoint was pruned";
  // The held-out loss at the best step is the lowest of the run's evaluations.
  std::ifstream in(run + "/metrics.jsonl");
  double lowest = 1e300, at_best = 0;
  for (std::string line; std::getline(in, line);) {
    const json record = json::parse(line);
    if (!record.contains("eval") || record["step"] == 0) continue;
    lowest = std::min(lowest, record["lm_loss"].get<double>());
    if (record["step"] == best_step) at_best = record["lm_loss"];
  }
  EXPECT_EQ(at_best, lowest);
}

TEST(TrainRuns, EmptyRankOverrideSendsNothingToThatRank) {
  std::vector<json> steps = steps_of("override_empty_rank_world4_ep4");
  ASSERT_EQ(steps.size(), 4u);
  for (const json& step : steps)
    for (const auto& layer : step["tokens_per_expert"])
      EXPECT_EQ(layer[3], 0) << "expert 3 lives on EP rank 3";
}

TEST(TrainRuns, CollapsedRouterTrainsToTheLastStep) {
  std::vector<json> steps = steps_of("router_collapse_world4_ep4");
  ASSERT_EQ(steps.size(), 60u);
  EXPECT_EQ(steps.back()["step"], 60);
  // The run did exercise the case that used to hang: some step left a rank's experts
  // (4 per rank of 16) without a single row.
  bool rank_without_rows = false;
  for (const json& step : steps)
    for (const auto& layer : step["tokens_per_expert"])
      for (int rank = 0; rank < 4; ++rank) {
        int64_t rows = 0;
        for (int e = 4 * rank; e < 4 * rank + 4; ++e) rows += layer[e].get<int64_t>();
        rank_without_rows = rank_without_rows || rows == 0;
      }
  EXPECT_TRUE(rank_without_rows) << "the router never collapsed far enough to starve a rank";
}

}  // namespace
