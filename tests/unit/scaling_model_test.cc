// The scaling model's arithmetic, on layouts small enough to work out by hand.
#include <gtest/gtest.h>

#include "bench/scaling_model.h"
#include "common/error.h"
#include "test_support.h"

namespace triage::model {
namespace {

// Every rate 1 unit per second and links of 1 us + 1 GB/s, on hosts of `slots` slots.
Params unit_params(double slots) {
  Params p;
  p.slots_per_host = slots;
  p.intra_host = {1e-6, 1e9};
  p.inter_host = {1e-5, 1e8};
  p.route_flops_per_s = p.pack_bytes_per_s = p.expert_forward_flops_per_s = p.combine_bytes_per_s =
      p.combine_backward_bytes_per_s = p.expert_backward_flops_per_s =
          p.pack_route_backward_bytes_per_s = p.dense_flops_per_s = p.optimizer_bytes_per_s = 1.0;
  return p;
}

double phase(const Prediction& p, const std::string& name) {
  for (const auto& [label, s] : p.phases)
    if (label == name) return s;
  ADD_FAILURE() << "no phase " << name;
  return 0;
}

TEST(FitLink, RecoversLatencyAndBandwidthOfAnExactLine) {
  std::vector<std::pair<double, double>> points;
  for (double bytes = 8; bytes <= 64 << 20; bytes *= 8)
    points.emplace_back(bytes, 1e-5 + bytes / 1e9);
  const Link link = fit_link(points, 1 << 20);
  EXPECT_NEAR(link.latency_s, 1e-5, 1e-8);  // the 8-byte point: 1e-5 + 8e-9
  EXPECT_NEAR(link.bandwidth_Bps, 1e9, 1e9 * 1e-3);
}

TEST(FitLink, ASmallMessageDelayedByTheSchedulerDoesNotSetTheLatency) {
  std::vector<std::pair<double, double>> points = {
      {8, 4e-3}, {64, 1e-5}, {512, 1e-5}, {1 << 20, 1e-5 + 1e-3}};
  EXPECT_NEAR(fit_link(points, 1 << 20).latency_s, 1e-5, 1e-12);
}

// Measured on the virtual hosts at 1 Gbit/s: 32 MiB took 5x its share (the TCP window
// collapsed under the token bucket) and least squares, weighing it most, halved the fit.
TEST(FitLink, OneStalledSizeDoesNotSetTheBandwidth) {
  std::vector<std::pair<double, double>> points = {{8, 1e-5}};
  for (double bytes = 2 << 20; bytes <= 16 << 20; bytes *= 2)
    points.emplace_back(bytes, 1e-5 + bytes / 1.2e8);
  points.emplace_back(32 << 20, 1e-5 + 5 * (32 << 20) / 1.2e8);
  EXPECT_NEAR(fit_link(points, 8 << 20).bandwidth_Bps, 1.2e8, 1.2e8 * 1e-6);
}

TEST(PredictLayer, OneRankComputesEveryAssignmentAndExchangesNothing) {
  // T 10, K 2, D 3, H 5, E 2: experts forward = 20 rows x 6 D H = 1800 flops at 1/s.
  const Prediction p = predict_layer(unit_params(1), {1, 1, 0}, {10, 3, 5, 2, 2, 3}, {0.5, 0.5});
  EXPECT_DOUBLE_EQ(phase(p, "experts"), 1800.0);
  EXPECT_DOUBLE_EQ(phase(p, "experts bwd"), 3600.0);
  EXPECT_DOUBLE_EQ(phase(p, "route"), 2.0 * 10 * 3 * 2);
  EXPECT_DOUBLE_EQ(phase(p, "sort/pack"), 2.0 * 20 * 3 * 4);
  EXPECT_DOUBLE_EQ(p.exchange_s, 0.0);
}

TEST(PredictLayer, BalancedRowExchangeOnOneHostCostsLatencyPlusHalfTheRowsOverBandwidth) {
  // T 100, K 2, D 10, 2 ranks: each sends 100 of its 200 rows (40 bytes each) to the
  // other and receives 100: 1e-6 + 4000 / 1e9 seconds.
  const Prediction p =
      predict_layer(unit_params(2), {2, 2, 0}, {100, 10, 20, 4, 2, 3}, {0.25, 0.25, 0.25, 0.25});
  EXPECT_NEAR(phase(p, "combine rows"), 5e-6, 1e-15);
  EXPECT_NEAR(phase(p, "dispatch rows bwd"), 5e-6, 1e-15);
  EXPECT_DOUBLE_EQ(phase(p, "wait"), 0.0);
}

TEST(PredictLayer, AcrossTwoHostsTheBusiestHostsOffHostBytesUseTheNetwork) {
  // Rank 1 on host 2 holds every expert: host 1 sends all 200 rows (8000 bytes) to it.
  const Prediction p = predict_layer(unit_params(1), {2, 1, 0}, {100, 10, 20, 2, 2, 3}, {0.0, 1.0});
  EXPECT_NEAR(phase(p, "combine rows"), 1e-5 + 8000.0 / 1e8, 1e-15);
}

TEST(PredictLayer, AShapedLinkChargesOnlyTheBytesBeyondItsBurst) {
  // As above, 8000 bytes through host 1's link; a 6000-byte burst leaves 2000 to meet the
  // bandwidth, a burst larger than the message leaves the latency alone.
  Params shaped = unit_params(1);
  shaped.inter_host.burst_bytes = 6000;
  const LayerShape shape{100, 10, 20, 2, 2, 3};
  EXPECT_NEAR(phase(predict_layer(shaped, {2, 1, 0}, shape, {0.0, 1.0}), "combine rows"),
              1e-5 + 2000.0 / 1e8, 1e-15);
  shaped.inter_host.burst_bytes = 1e6;
  EXPECT_NEAR(phase(predict_layer(shaped, {2, 1, 0}, shape, {0.0, 1.0}), "combine rows"), 1e-5,
              1e-15);
}

TEST(PredictLayer, PerRankDispatchSendsTheTokensThatReachARankOnceEach) {
  // Two ranks on two hosts, top-2, balanced: per_choice sends each token's 2 x 1/2 = 1 row to
  // the other host (100 rows of 40 bytes); per_rank with 3/4 of the tokens reaching each rank
  // sends 75 rows. Expert work follows the choices, not the rows on the wire.
  LayerShape shape{100, 10, 20, 2, 2, 3};
  const Prediction per_choice = predict_layer(unit_params(1), {2, 1, 0}, shape, {0.5, 0.5});
  shape.rows_per_token_to_rank = {0.75, 0.75};
  const Prediction per_rank = predict_layer(unit_params(1), {2, 1, 0}, shape, {0.5, 0.5});
  EXPECT_NEAR(phase(per_choice, "combine rows"), 1e-5 + 4000.0 / 1e8, 1e-15);
  EXPECT_NEAR(phase(per_rank, "dispatch rows"), 1e-5 + 3000.0 / 1e8, 1e-15);
  EXPECT_NEAR(phase(per_rank, "combine rows bwd"), 1e-5 + 3000.0 / 1e8, 1e-15);
  EXPECT_DOUBLE_EQ(phase(per_rank, "experts"), phase(per_choice, "experts"));
}

TEST(PredictLayer, PerChoiceComputesOwnRowsWhileTheOthersTravel) {
  // Two ranks on two hosts, top-2, balanced: a row exchange is 1e-5 + 4000 / 1e8 = 5e-5 s.
  // Each rank's experts take 200 rows of 2 x 3 x 10 x 20 flops, at 1e10/s 2.4e-5 s forward;
  // its own half computes while the other half travels, so the dispatch waits 3.8e-5 s.
  // Backward at 1e10/s takes 4.8e-5 s for twice the flops: the gradients coming in wait
  // 2.6e-5 s. The exchanges out of the experts hide nothing.
  Params fast = unit_params(1);
  fast.expert_forward_flops_per_s = fast.expert_backward_flops_per_s = 1e10;
  const Prediction p = predict_layer(fast, {2, 1, 0}, {100, 10, 20, 2, 2, 3}, {0.5, 0.5});
  EXPECT_NEAR(phase(p, "dispatch rows"), 5e-5 - 1.2e-5, 1e-15);
  EXPECT_NEAR(phase(p, "combine rows bwd"), 5e-5 - 2.4e-5, 1e-15);
  EXPECT_NEAR(phase(p, "combine rows"), 5e-5, 1e-15);
  EXPECT_NEAR(phase(p, "dispatch rows bwd"), 5e-5, 1e-15);
}

// Hierarchical, 2 hosts x 2 ranks, T 100, D 10 (40-byte rows), one expert per rank, top-1,
// balanced: each token reaches the other host with probability 1/2 (rows_per_token_to_host
// 1/2 each) and each rank with 1/4. Across hosts a host sends 2 ranks x 100 x 1/2 = 100 rows
// (4000 bytes: 1e-5 + 4e-5 s); on the host each gateway holds 2 x 100 x 1/2 = 100 units of
// which 2 x 100 x 1/4 = 50 go to its neighbour (2000 bytes: 2e-6 s at 1 GB/s), after 1 us.
TEST(PredictLayer, HierarchicalCrossesTheNetworkOncePerHostThenFansOutOnTheHost) {
  LayerShape shape{100, 10, 20, 4, 1, 3};
  shape.hierarchical = true;
  shape.rows_per_token_to_rank = {0.25, 0.25, 0.25, 0.25};
  shape.rows_per_token_to_host = {0.5, 0.5};
  const Prediction p = predict_layer(unit_params(2), {4, 2, 0}, shape, {0.25, 0.25, 0.25, 0.25});
  const double count = 1e-5 + 1e-6;
  EXPECT_NEAR(phase(p, "count exchange"), count, 1e-15);
  EXPECT_NEAR(phase(p, "dispatch rows"), count + 4000.0 / 1e8 + 2000.0 / 1e9, 1e-15);
  EXPECT_NEAR(phase(p, "combine rows"), count + 4000.0 / 1e8 + 2000.0 / 1e9, 1e-15);
  // Eight NICs on a host of two ranks: two of them carry its bytes.
  Params dgx = unit_params(2);
  dgx.nics_per_host = 8;
  EXPECT_NEAR(phase(predict_layer(dgx, {4, 2, 0}, shape, {0.25, 0.25, 0.25, 0.25}), "combine rows"),
              count + 4000.0 / 2e8 + 2000.0 / 1e9, 1e-15);
}

TEST(PredictLayer, ASkewedRankWaitsOnlyForItsOwnExtraRowsWhenItHasTheCores) {
  // Rank 0 gets 3/4 of 2 x 100 rows = 150, rank 1 50; 6 flops per row (D = H = 1) at 1/s.
  // With a slot each: experts at the mean (100 rows, 600 s), then 50 rows more of waiting.
  const Prediction p = predict_layer(unit_params(2), {2, 2, 0}, {100, 1, 1, 2, 1, 3}, {0.75, 0.25});
  EXPECT_DOUBLE_EQ(phase(p, "experts"), 600.0);
  EXPECT_DOUBLE_EQ(phase(p, "wait"), 300.0);
}

TEST(PredictLayer, RanksSharingOneSlotFinishWhenTheirTotalWorkIsDone) {
  // The same loads on one slot: both run at half speed until rank 1's 300 s of work is
  // done (600 s), then rank 0 alone at full speed for its remaining 600 s: 1200 s in all,
  // exactly the 1200 s of work; the balanced share (2 x 600 s) leaves no waiting.
  const Prediction p = predict_layer(unit_params(1), {2, 2, 0}, {100, 1, 1, 2, 1, 3}, {0.75, 0.25});
  EXPECT_DOUBLE_EQ(phase(p, "experts"), 1200.0);
  EXPECT_DOUBLE_EQ(phase(p, "wait"), 0.0);
}

// Gradient sync on one host of 4 ranks (1 us + 1 GB/s): 1e6 replicated float32 parameters
// all-reduce in 2 latencies + 2 x 3/4 x 4 MB / 1 GB/s = 6.002 ms.
StepShape sync_shape() {
  StepShape s;
  s.replicated_parameters = 1e6;
  return s;
}
constexpr double kAllReduceS = 2e-6 + 6e-3;

TEST(PredictSync, WithoutOverlapTheStepWaitsForTheWholeAllReduce) {
  const SyncPrediction p = predict_sync(unit_params(4), {4, 4, 4}, sync_shape(), /*compute_s=*/1);
  EXPECT_NEAR(p.reduce_s, kAllReduceS, 1e-12);
  EXPECT_NEAR(p.exposed_s, kAllReduceS, 1e-12);
  EXPECT_NEAR(p.optimizer_s, kAdamWBytesPerParameter * 1e6, 1e-6);
}

TEST(PredictSync, OverlapHidesAllButTheLastBucketBehindALongBackward) {
  StepShape s = sync_shape();
  s.overlap_grad_sync = true;
  s.grad_bucket_bytes = 1e6;  // a quarter of the 4 MB of gradients
  const SyncPrediction p = predict_sync(unit_params(4), {4, 4, 4}, s, /*compute_s=*/1);
  EXPECT_NEAR(p.exposed_s, kAllReduceS / 4, 1e-12);
}

TEST(PredictSync, OverlapHidesAtMostTheBackwardTwoThirdsOfCompute) {
  StepShape s = sync_shape();
  s.overlap_grad_sync = true;
  s.grad_bucket_bytes = 1e5;
  const SyncPrediction p = predict_sync(unit_params(4), {4, 4, 4}, s, /*compute_s=*/3e-3);
  EXPECT_NEAR(p.exposed_s, kAllReduceS - 2e-3, 1e-12);
}

TEST(PredictSync, ShardedReducesHalfGathersParametersAndUpdatesOneShard) {
  StepShape s = sync_shape();
  s.shard_optimizer = true;
  s.gradient_wire_bytes = 2;  // bf16 gradients, float32 parameters
  const SyncPrediction p = predict_sync(unit_params(4), {4, 4, 4}, s, /*compute_s=*/1);
  const double reduce_s = 0.5 * (2e-6 + 3e-3), gather_s = 0.5 * kAllReduceS;
  EXPECT_NEAR(p.reduce_s, reduce_s, 1e-12);
  EXPECT_NEAR(p.exposed_s, reduce_s + gather_s, 1e-12);
  EXPECT_NEAR(p.optimizer_s, kAdamWBytesPerParameter * 1e6 / 4, 1e-6);
}

TEST(PredictSync, ExpertGradientsOfOneHostShareItsLinkAcrossHosts) {
  // 4 hosts of 2 ranks, EP 2: each host is one EP group, so both of its ranks all-reduce
  // their experts (1e6 float32 parameters each) with the 3 other hosts at the same time,
  // each at half of the host's one 100 MB/s link: 2 latencies + 2 x 3/4 x 4 MB / 50 MB/s,
  // after the 3 latencies of the world's all-reduce of (no) replicated parameters.
  StepShape s;
  s.expert_parameters_per_rank = 1e6;
  Params params = unit_params(2);
  params.nics_per_host = 1;
  const SyncPrediction one_nic = predict_sync(params, {8, 2, 2}, s, /*compute_s=*/1);
  EXPECT_NEAR(one_nic.reduce_s, 5e-5 + 0.12, 1e-12);
  // With a NIC per rank the flows no longer share one.
  params.nics_per_host = 2;
  EXPECT_NEAR(predict_sync(params, {8, 2, 2}, s, 1).reduce_s, 5e-5 + 0.06, 1e-12);
}

TEST(PredictStep, RecomputedBlocksRunForwardAgainExchangesIncluded) {
  // Backward is twice forward, so a step's compute is 3 forwards: replaying forward adds
  // one (4/3); the exchange's forward half (dispatch and combine) runs once more (3/2).
  StepShape s;
  s.moe = {100, 1, 1, 2, 1, 3};
  s.moe_layers = s.layers = 1;
  s.seq_len = 10;
  s.vocab = 4;
  const Params params = unit_params(2);
  const Prediction kept = predict_step(params, {2, 2, 2}, s, {0.5, 0.5});
  s.recompute_blocks = true;
  const Prediction replayed = predict_step(params, {2, 2, 2}, s, {0.5, 0.5});
  EXPECT_NEAR(phase(replayed, "compute") / phase(kept, "compute"), 4.0 / 3.0, 1e-12);
  EXPECT_NEAR(phase(replayed, "exchange") / phase(kept, "exchange"), 1.5, 1e-12);
}

TEST(RateAt, InterpolatesLinearlyInLogRowsAndHoldsTheEnds) {
  const std::vector<std::pair<double, double>> curve = {{100, 1.0}, {400, 3.0}};
  EXPECT_DOUBLE_EQ(rate_at(curve, 200, 0), 2.0);  // halfway in log(rows): 1 + 2 * log 2 / log 4
  EXPECT_DOUBLE_EQ(rate_at(curve, 50, 0), 1.0);
  EXPECT_DOUBLE_EQ(rate_at(curve, 1000, 0), 3.0);
  EXPECT_DOUBLE_EQ(rate_at({}, 1000, 7.0), 7.0);
}

TEST(ReadParams, AMissingRateIsNamedWithTheFile) {
  const std::string path = testing_support::write_temp_file(
      "params_missing.json",
      R"({"slots_per_host": 2, "links": {"intra_host": {"latency_s": 1e-6, "bandwidth_Bps": 1e9}},
                             "compute": {"route_flops_per_s": 1}})");
  try {
    read_params(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              path + ": compute.pack_bytes_per_s: missing; expected a positive number");
  }
}

TEST(ReadParams, WrittenParamsReadBackUnchanged) {
  Params p = unit_params(8);
  p.inter_host.burst_bytes = 262144;
  p.assumptions = {"stated for a test"};
  const std::string path =
      testing_support::write_temp_file("params_round_trip.json", to_json(p).dump());
  const Params q = read_params(path);
  EXPECT_EQ(q.slots_per_host, 8);
  EXPECT_EQ(q.inter_host.bandwidth_Bps, 1e8);
  EXPECT_EQ(q.inter_host.burst_bytes, 262144);
  EXPECT_EQ(q.intra_host.burst_bytes, 0);
  EXPECT_EQ(q.expert_backward_flops_per_s, 1.0);
  EXPECT_EQ(q.assumptions, p.assumptions);
}

}  // namespace
}  // namespace triage::model
