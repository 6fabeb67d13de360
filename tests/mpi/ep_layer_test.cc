// The expert-parallel MoE layer computes exactly what one rank holding every expert
// computes (float64, 1e-10 relative): the loss (with balance loss and z-loss), outputs,
// input gradients, and, after GradientSync, the gate and every expert gradient.
// Every rank builds the same global batch and takes its contiguous slice of it.
#include <gtest/gtest.h>

#include <set>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <ATen/autocast_mode.h>

#include <ATen/CPUGeneratorImpl.h>

#include "common/error.h"
#include "moe/expert_pipeline.h"
#include "moe/moe_layer.h"
#include "mpi_test_support.h"
#include "train/grad_sync.h"

namespace triage {
namespace {

using namespace testing_support;

constexpr int64_t kTokensPerRank = 6, kWidth = 6, kExperts = 8;
constexpr uint64_t kSeed = 9;

MoeConfig layer_config(const std::string& score_function, int64_t k, double capacity_factor,
                       const std::string& balance_mode) {
  MoeConfig config = ep_moe_config(kExperts, k);
  config.score_function = choice_from<ScoreFunction>(score_function);
  config.d_expert = 5;
  config.capacity_factor = capacity_factor;
  config.min_capacity = 1;
  config.balance_loss_coef = 0.1;
  config.balance_loss_mode = choice_from<BalanceLossMode>(balance_mode);
  config.z_loss_coef = 0.01;
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

// Forwards every call to `inner`; tests override what they watch or imitate.
struct ForwardingCommunicator : Communicator {
  Communicator& inner;
  explicit ForwardingCommunicator(Communicator& c) : inner(c) {}
  int rank() const override { return inner.rank(); }
  int size() const override { return inner.size(); }
  std::vector<int64_t> alltoall(const std::vector<int64_t>& send) override {
    return inner.alltoall(send);
  }
  at::Tensor alltoallv_rows(const at::Tensor& rows, const std::vector<int64_t>& send_rows,
                            const std::vector<int64_t>& recv_rows) override {
    return inner.alltoallv_rows(rows, send_rows, recv_rows);
  }
  std::unique_ptr<PendingRows> start_alltoallv_rows(
      const at::Tensor& send, const std::vector<RowSpan>& send_spans, const at::Tensor& recv,
      const std::vector<RowSpan>& recv_spans) override {
    return inner.start_alltoallv_rows(send, send_spans, recv, recv_spans);
  }
  void allreduce_sum_(at::Tensor& t) override { inner.allreduce_sum_(t); }
  void broadcast_(at::Tensor& t, int root) override { inner.broadcast_(t, root); }
  void barrier() override { inner.barrier(); }
  std::vector<int> host_of_ranks() override { return inner.host_of_ranks(); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    return inner.split(color, key);
  }
};

// The EP group seen as hosts of its ranks: rank r on host host_of_rank[r] (the live layout
// puts every rank of these tests on one host), every collective the group's own.
struct VirtualHosts : ForwardingCommunicator {
  std::vector<int> host_of_rank;
  VirtualHosts(Communicator& c, std::vector<int> hosts)
      : ForwardingCommunicator(c), host_of_rank(std::move(hosts)) {}
  // Hosts of `per_host` consecutive ranks.
  static std::vector<int> consecutive(int ranks, int per_host) {
    std::vector<int> hosts;
    for (int r = 0; r < ranks; ++r) hosts.push_back(r / per_host);
    return hosts;
  }
  std::vector<int> host_of_ranks() override { return host_of_rank; }
};

// What the one-rank reference must compute the loss over, to see the same batches the EP
// layer's capacity and balance loss see.
enum class ReferenceShards {
  kPerEpGroup,  // global balance loss, dropless: the group's batch (the whole batch if DP = 1)
  kPerRank,     // local balance loss or capacity: each rank's slice
};

// Runs the EP layer on this rank's slice, syncs gradients, and checks the loss, outputs
// and every gradient against the one-rank reference, whose loss is the mean over shards.
// sequence_length > 0: the layer sees [sequences, sequence_length, D] (the sequence-wise
// balance loss needs sequences); 0: [tokens, D].
// hosts: the EP group's ranks as hosts (VirtualHosts); empty: the live layout.
void expect_ep_matches_reference(const MoeConfig& config, ReferenceShards sharding,
                                 int64_t sequence_length = 0, const std::vector<int>& hosts = {}) {
  auto as_input = [&](const at::Tensor& x_TD) {
    return sequence_length > 0 ? x_TD.view({-1, sequence_length, kWidth}) : x_TD;
  };
  ProcessGroups groups = groups_for(config);
  const GroupLayout& g = groups.layout;
  Batch batch = global_batch(g.world_size);
  const int64_t first_token = g.world_rank * kTokensPerRank;
  auto my_slice = [&](const at::Tensor& t) { return t.narrow(0, first_token, kTokensPerRank); };

  VirtualHosts on_hosts(*groups.ep, hosts.empty() ? groups.ep->hosts() : hosts);
  MoeLayer ep_layer(config, kWidth, at::kDouble, kSeed, &on_hosts);
  at::Tensor x = my_slice(batch.x_GD).clone().set_requires_grad(true);
  MoeOutput out = ep_layer.forward(as_input(x), true, first_token);
  at::Tensor loss = objective(out, as_input(my_slice(batch.r_GD)));
  loss.backward();
  GradientSync(ep_layer.parameters(), *groups.world, *groups.expert_dp).synchronize();
  at::Tensor mean_loss = loss.detach().reshape({1}).clone();
  groups.world->allreduce_sum_(mean_loss);
  mean_loss /= g.world_size;

  MoeLayer reference(config, kWidth, at::kDouble, kSeed, nullptr, nullptr, g.ep_size);
  at::Tensor x_ref = batch.x_GD.clone().set_requires_grad(true);
  const int64_t shards = sharding == ReferenceShards::kPerRank ? g.world_size : g.dp_size;
  const int64_t shard_tokens = x_ref.size(0) / shards;
  const int64_t my_shard = first_token / shard_tokens;
  at::Tensor reference_loss = at::zeros({}, at::kDouble), my_shard_balance;
  std::vector<at::Tensor> y_ref_parts;
  for (int64_t s = 0; s < shards; ++s) {
    MoeOutput part = reference.forward(as_input(x_ref.narrow(0, s * shard_tokens, shard_tokens)),
                                       true, s * shard_tokens);
    reference_loss =
        reference_loss +
        objective(part, as_input(batch.r_GD.narrow(0, s * shard_tokens, shard_tokens))) /
            double(shards);
    y_ref_parts.push_back(part.y.detach());
    if (s == my_shard) my_shard_balance = part.balance_loss.detach();
  }
  reference_loss.backward();

  EXPECT_LT(relative_error(mean_loss, reference_loss.detach().reshape({1})), 1e-10) << "loss";
  if (config.balance_loss_mode == BalanceLossMode::kGlobal || sharding == ReferenceShards::kPerRank)
    EXPECT_LT(relative_error(out.balance_loss.detach(), my_shard_balance), 1e-10) << "balance";
  EXPECT_LT(relative_error(out.y.detach().view({-1, kWidth}),
                           my_slice(at::cat(y_ref_parts).view({-1, kWidth}))),
            1e-10)
      << "output";
  // Input gradients are not synced: rank r holds d(sum of all ranks' losses)/dx_r.
  EXPECT_LT(relative_error(x.grad() / double(g.world_size), my_slice(x_ref.grad())), 1e-10)
      << "input gradient";
  EXPECT_LT(relative_error(ep_layer.router().gate_ED().grad(), reference.router().gate_ED().grad()),
            1e-10)
      << "gate gradient";
  if (config.noise == RouterNoise::kShazeer)
    EXPECT_LT(relative_error(ep_layer.router().noise_gate_ED().grad(),
                             reference.router().noise_gate_ED().grad()),
              1e-10)
        << "noise gate gradient";

  auto ep_params = ep_layer.experts().parameters();
  auto ref_params = reference.experts().parameters();
  const int64_t first = ep_layer.experts().first_expert(), local = ep_layer.experts().num_experts();
  ASSERT_EQ(local, kExperts / g.ep_size);
  for (size_t i = 0; i < ep_params.size(); ++i) {
    EXPECT_TRUE(at::equal(ep_params[i].tensor.detach(),
                          ref_params[i].tensor.detach().narrow(0, first, local)))
        << ep_params[i].name << ": initial weights differ from the reference's experts";
    EXPECT_LT(relative_error(ep_params[i].tensor.grad(),
                             ref_params[i].tensor.grad().narrow(0, first, local)),
              1e-10)
        << ep_params[i].name << " gradient";
  }
}

TEST(ExpertParallelLayer, MatchesOneRankSoftmaxTopTwoDroplessGlobalBalance) {
  expect_ep_matches_reference(layer_config("softmax", 2, 0.0, "global"),
                              ReferenceShards::kPerEpGroup);
}

TEST(ExpertParallelLayer, MatchesOneRankSigmoidTopFourDroplessGlobalBalance) {
  expect_ep_matches_reference(layer_config("sigmoid", 4, 0.0, "global"),
                              ReferenceShards::kPerEpGroup);
}

TEST(ExpertParallelLayer, LocalBalanceMatchesOneRankPerRankShard) {
  expect_ep_matches_reference(layer_config("softmax", 2, 0.0, "local"), ReferenceShards::kPerRank);
}

TEST(ExpertParallelLayer, WithDropsMatchesOneRankApplyingCapacityPerRankShard) {
  MoeConfig config = layer_config("softmax", 2, 0.5, "local");  // capacity ceil(0.5*6*2/8) = 1
  config.drop_policy = DropPolicy::kScore;
  expect_ep_matches_reference(config, ReferenceShards::kPerRank);
}

// Forced routing (moe.routing_override) keeps the EP layer equal to the reference however
// skewed: every rank still issues the same collectives, forward and backward, including
// ranks whose experts receive nothing.
MoeConfig overridden(const std::string& rule, int64_t k) {
  MoeConfig config = layer_config("softmax", k, 0.0, "global");
  config.routing_override = rule;
  return config;
}

TEST(ExpertParallelLayer, BalancedOverrideMatchesOneRank) {
  expect_ep_matches_reference(overridden("balanced", 2), ReferenceShards::kPerEpGroup);
}

TEST(ExpertParallelLayer, AllAssignmentsOnExpertZeroMatchOneRank) {
  expect_ep_matches_reference(overridden("hot:0:1.0", 1), ReferenceShards::kPerEpGroup);
  expect_ep_matches_reference(overridden("hot:0:1.0", 2), ReferenceShards::kPerEpGroup);
}

TEST(ExpertParallelLayer, HotExpertOverrideMatchesOneRank) {
  expect_ep_matches_reference(overridden("hot:5:0.7", 2), ReferenceShards::kPerEpGroup);
}

TEST(ExpertParallelLayer, ZipfOverrideMatchesOneRank) {
  expect_ep_matches_reference(overridden("zipf:2.0", 2), ReferenceShards::kPerEpGroup);
}

TEST(ExpertParallelLayer, EmptyRankOverrideMatchesOneRank) {
  const std::string last_rank = "empty_rank:" + std::to_string(g_ep_size - 1);
  if (kExperts - kExperts / g_ep_size < 2) GTEST_SKIP() << "one EP rank holds every expert";
  expect_ep_matches_reference(overridden(last_rank, 2), ReferenceShards::kPerEpGroup);
}

TEST(ExpertParallelLayer, EmptyRankReceivesNoRowsAndItsExpertGradientsAreZero) {
  MoeConfig config = overridden("empty_rank:0", 2);
  if (g_ep_size == 1) GTEST_SKIP() << "EP 1: rank 0 holds every expert";
  ProcessGroups groups = groups_for(config);
  MoeLayer layer(config, kWidth, at::kDouble, kSeed, groups.ep.get());
  Batch batch = global_batch(groups.layout.world_size);
  at::Tensor x = batch.x_GD.narrow(0, groups.layout.world_rank * kTokensPerRank, kTokensPerRank);
  MoeOutput out = layer.forward(x, true, groups.layout.world_rank * kTokensPerRank);
  out.y.sum().backward();
  for (int64_t e = 0; e < kExperts / g_ep_size; ++e)
    EXPECT_EQ(out.stats.tokens_per_expert[e], 0) << "expert " << e;
  if (groups.ep->rank() == 0)
    for (const auto& p : layer.experts().parameters()) {
      ASSERT_TRUE(p.tensor.grad().defined()) << p.name << ": gradient missing on the empty rank";
      EXPECT_EQ(p.tensor.grad().abs().max().item<double>(), 0.0) << p.name;
    }
}

TEST(ExpertParallelLayer, SequenceWiseBalanceLossMatchesOneRank) {
  MoeConfig config = layer_config("softmax", 2, 0.0, "global");
  config.balance_loss_scope = BalanceLossScope::kSequence;
  expect_ep_matches_reference(config, ReferenceShards::kPerEpGroup, /*sequence_length=*/3);
}

TEST(ExpertParallelLayer, LocalSequenceWiseBalanceLossMatchesOneRankPerRankShard) {
  MoeConfig config = layer_config("sigmoid", 2, 0.0, "local");
  config.balance_loss_scope = BalanceLossScope::kSequence;
  expect_ep_matches_reference(config, ReferenceShards::kPerRank, /*sequence_length=*/2);
}

// Sequence-level routing: a sequence never spans ranks, so its mean, choice and weights
// are the reference's; with drops, capacity (in sequences) is each rank's shard's.
TEST(ExpertParallelLayer, SequenceRoutingMatchesOneRank) {
  MoeConfig config = layer_config("softmax", 2, 0.0, "global");
  config.routing_level = RoutingLevel::kSequence;
  expect_ep_matches_reference(config, ReferenceShards::kPerEpGroup, /*sequence_length=*/3);
}

TEST(ExpertParallelLayer, SequenceRoutingWithDropsMatchesOneRankPerRankShard) {
  MoeConfig config = layer_config("sigmoid", 1, 0.5, "local");
  config.routing_level = RoutingLevel::kSequence;
  expect_ep_matches_reference(config, ReferenceShards::kPerRank, /*sequence_length=*/2);
}

// Expert choice ranks the EP group's whole batch (one all-reduce of the scores), so each
// expert takes the tokens (sequences) the reference's does over that batch.
TEST(ExpertParallelLayer, ExpertChoiceMatchesOneRankOverTheGroupsBatch) {
  MoeConfig config = layer_config("softmax", 2, 1.0, "global");
  config.router = RouterKind::kExpertChoice;
  expect_ep_matches_reference(config, ReferenceShards::kPerEpGroup);
  config.routing_level = RoutingLevel::kSequence;
  expect_ep_matches_reference(config, ReferenceShards::kPerEpGroup, /*sequence_length=*/2);
}

// Training noise is keyed by global token: every layout draws what the reference draws.
TEST(ExpertParallelLayer, ShazeerNoiseWithItsCvSquaredLossMatchesOneRank) {
  MoeConfig config = layer_config("softmax", 2, 0.0, "global");
  config.noise = RouterNoise::kShazeer;
  config.balance_loss_type = BalanceLossType::kCvSquared;
  expect_ep_matches_reference(config, ReferenceShards::kPerEpGroup);
}

TEST(ExpertParallelLayer, ExpertDropoutMatchesOneRank) {
  MoeConfig config = layer_config("softmax", 2, 0.0, "global");
  config.expert_dropout = 0.3;
  expect_ep_matches_reference(config, ReferenceShards::kPerEpGroup);
}

TEST(ExpertParallelLayer, JitterNoiseMatchesOneRank) {
  MoeConfig config = layer_config("sigmoid", 2, 0.0, "global");
  config.noise = RouterNoise::kJitter;
  config.jitter_noise = 0.3;
  expect_ep_matches_reference(config, ReferenceShards::kPerEpGroup);
}

// train.precision bf16, proven on the CPU (CPU autocast does bf16 too): the experts get bf16
// rows (2 bytes a value on the wire) and the layer's output and input gradient match the
// float64 reference within bf16's precision, while differing from the float32 run by more
// than float32 roundoff could (so bf16 really ran). Tolerance: bf16 keeps 8 significant
// bits (unit roundoff u = 2^-8 ~ 4e-3); rows, weights, hidden activations and outputs are
// each rounded once and every GEMM sums at most 6 products in float32: about 4u, so 2e-2
// of the largest value (measured: 6e-3 output, 9e-3 input gradient; float32 4e-7).
TEST(ExpertParallelLayer, Bf16AutocastSendsBf16RowsAndMatchesOneRankWithinBf16Precision) {
  MoeConfig config = layer_config("softmax", 2, 0.0, "global");
  ProcessGroups groups = groups_for(config);
  const GroupLayout& g = groups.layout;
  const Batch batch = global_batch(g.world_size);
  const int64_t first_token = g.world_rank * kTokensPerRank;
  const int64_t group_first = g.world_rank / g.ep_size * g.ep_size * kTokensPerRank;

  MoeLayer reference(config, kWidth, at::kDouble, kSeed, nullptr, nullptr, g.ep_size);
  const at::Tensor x_ref =
      batch.x_GD.narrow(0, group_first, g.ep_size * kTokensPerRank).clone().set_requires_grad(true);
  MoeOutput want = reference.forward(x_ref, true, group_first);
  (want.y * batch.r_GD.narrow(0, group_first, g.ep_size * kTokensPerRank)).sum().backward();
  auto mine = [&](const at::Tensor& t) {
    return t.narrow(0, first_token - group_first, kTokensPerRank);
  };

  auto run = [&](bool bf16, at::Tensor& grad_x) {
    MoeLayer layer(config, kWidth, at::kFloat, kSeed, groups.ep.get());
    const int64_t first_expert = layer.experts().first_expert();
    const int64_t local = layer.experts().num_experts();
    {
      c10::NoGradGuard no_grad;
      auto from = reference.parameters();
      auto to = layer.parameters();
      for (size_t i = 0; i < to.size(); ++i)
        to[i].tensor.copy_(to[i].sharding == Sharding::kExpert
                               ? from[i].tensor.narrow(0, first_expert, local)
                               : from[i].tensor);
    }
    at::Tensor x = batch.x_GD.narrow(0, first_token, kTokensPerRank)
                       .to(at::kFloat)
                       .clone()
                       .set_requires_grad(true);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCPU, bf16);
    MoeOutput out = layer.forward(x, true, first_token);
    at::autocast::set_autocast_enabled(at::kCPU, false);
    at::autocast::clear_cache();
    EXPECT_EQ(out.stats.row_bytes, kWidth * (bf16 ? 2 : 4));
    (out.y * batch.r_GD.narrow(0, first_token, kTokensPerRank).to(at::kFloat)).sum().backward();
    grad_x = x.grad().to(at::kDouble);
    return out.y.detach().to(at::kDouble);
  };
  auto scaled_error = [](const at::Tensor& got, const at::Tensor& want) {
    return (got - want).abs().max().item<double>() / want.abs().max().item<double>();
  };
  at::Tensor grad_bf16, grad_fp32;
  const at::Tensor y_bf16 = run(true, grad_bf16), y_fp32 = run(false, grad_fp32);
  const at::Tensor y_want = mine(want.y.detach()), grad_want = mine(x_ref.grad());
  EXPECT_LT(scaled_error(y_bf16, y_want), 2e-2);
  EXPECT_LT(scaled_error(grad_bf16, grad_want), 2e-2);
  EXPECT_LT(scaled_error(y_fp32, y_want), 2e-6);
  EXPECT_GT(scaled_error(y_bf16, y_fp32), 1e-4) << "the bf16 run equals float32: no bf16 ran";
}

// Group-limited routing with one group per EP rank and one group kept: the layer still
// equals the reference, and every token's rows go to a single EP rank.
TEST(ExpertParallelLayer, GroupLimitedRoutingMatchesOneRankAndSendsEachTokenToOneRank) {
  MoeConfig config = layer_config("sigmoid", 2, 0.0, "global");
  config.topk_groups = 1;
  config.num_groups = g_ep_size;  // one group per EP rank
  expect_ep_matches_reference(config, ReferenceShards::kPerEpGroup);

  ProcessGroups groups = groups_for(config);
  MoeLayer layer(config, kWidth, at::kDouble, kSeed, groups.ep.get());
  Batch batch = global_batch(groups.layout.world_size);
  MoeOutput out = layer.forward(
      batch.x_GD.narrow(0, groups.layout.world_rank * kTokensPerRank, kTokensPerRank), true);
  const at::Tensor rank_TK = out.routing.experts_TK.div(kExperts / g_ep_size, "floor");
  EXPECT_TRUE(at::equal(rank_TK, rank_TK.narrow(1, 0, 1).expand_as(rank_TK)))
      << "a token's two experts on different ranks: " << out.routing.experts_TK;
}

// Ranks with different numbers of tokens, rank 0 with none: outputs and gradients equal
// the reference over the EP group's concatenated tokens.
TEST(ExpertParallelLayer, RankWithNoTokensMatchesOneRank) {
  MoeConfig config = layer_config("softmax", 2, 0.0, "global");
  config.balance_loss_coef = 0;  // the losses are means over tokens; this test sums
  config.z_loss_coef = 0;
  ProcessGroups groups = groups_for(config);
  const GroupLayout& g = groups.layout;
  auto tokens_of = [](int rank) { return int64_t(2 * rank); };
  int64_t first = 0, group_first = 0, group_tokens = 0;
  for (int r = 0; r < g.world_rank; ++r) first += tokens_of(r);
  const int group_start = g.world_rank - groups.ep->rank();
  for (int r = 0; r < group_start; ++r) group_first += tokens_of(r);
  for (int r = group_start; r < group_start + g.ep_size; ++r) group_tokens += tokens_of(r);
  int64_t total = 0;
  for (int r = 0; r < g.world_size; ++r) total += tokens_of(r);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Tensor x_all = at::randn({total, kWidth}, gen, at::kDouble);
  at::Tensor r_all = at::randn({total, kWidth}, gen, at::kDouble);

  MoeLayer layer(config, kWidth, at::kDouble, kSeed, groups.ep.get());
  at::Tensor x = x_all.narrow(0, first, tokens_of(g.world_rank)).clone().set_requires_grad(true);
  MoeOutput out = layer.forward(x, true);
  (out.y * r_all.narrow(0, first, tokens_of(g.world_rank))).sum().backward();
  GradientSync(layer.parameters(), *groups.world, *groups.expert_dp).synchronize();

  MoeLayer reference(config, kWidth, at::kDouble, kSeed);
  at::Tensor x_ref = x_all.narrow(0, group_first, group_tokens).clone().set_requires_grad(true);
  MoeOutput ref = reference.forward(x_ref, true);
  (ref.y * r_all.narrow(0, group_first, group_tokens)).sum().backward();

  const int64_t mine = first - group_first;
  EXPECT_LT(relative_error(out.y.detach(), ref.y.detach().narrow(0, mine, tokens_of(g.world_rank))),
            1e-10);
  EXPECT_LT(relative_error(x.grad(), x_ref.grad().narrow(0, mine, tokens_of(g.world_rank))), 1e-10);
  // GradientSync averages over the world; the reference saw one EP group's batch of dp_size.
  const double to_group_sum = double(g.world_size) / double(g.dp_size);
  const int64_t first_expert = layer.experts().first_expert(),
                local = layer.experts().num_experts();
  auto ep_params = layer.experts().parameters();
  auto ref_params = reference.experts().parameters();
  for (size_t i = 0; i < ep_params.size(); ++i)
    if (g.dp_size == 1)
      EXPECT_LT(relative_error(ep_params[i].tensor.grad() * to_group_sum,
                               ref_params[i].tensor.grad().narrow(0, first_expert, local)),
                1e-10)
          << ep_params[i].name;
}

// moe.exchange_chunks changes when rows travel, never what is computed: outputs, input
// gradients and expert gradients are bit for bit those of the exchange in one piece.
TEST(ExpertParallelLayer, ChunkedExchangeIsBitwiseTheSameAsOnePiece) {
  MoeConfig config = layer_config("softmax", 2, 0.0, "global");
  ProcessGroups groups = groups_for(config);
  Batch batch = global_batch(groups.layout.world_size);
  const int64_t first_token = groups.layout.world_rank * kTokensPerRank;
  struct Result {
    at::Tensor y, x_grad;
    std::vector<at::Tensor> expert_grads;
  };
  auto run = [&](int64_t chunks) {
    MoeConfig chunked = config;
    chunked.exchange_chunks = chunks;
    chunked.dispatch = Dispatch::kPerChoice;  // the pipeline's row per choice, in any chunks
    MoeLayer layer(chunked, kWidth, at::kDouble, kSeed, groups.ep.get());
    at::Tensor x =
        batch.x_GD.narrow(0, first_token, kTokensPerRank).clone().set_requires_grad(true);
    MoeOutput out = layer.forward(x, true, first_token);
    (out.y * batch.r_GD.narrow(0, first_token, kTokensPerRank)).sum().backward();
    Result result{out.y.detach(), x.grad(), {}};
    for (const auto& p : layer.experts().parameters())
      result.expert_grads.push_back(p.tensor.grad());
    return result;
  };
  const Result whole = run(1);
  for (int64_t chunks : {2, 4}) {
    const Result pieces = run(chunks);
    EXPECT_TRUE(at::equal(pieces.y, whole.y)) << chunks << " chunks: outputs";
    EXPECT_TRUE(at::equal(pieces.x_grad, whole.x_grad)) << chunks << " chunks: input gradients";
    for (size_t i = 0; i < whole.expert_grads.size(); ++i)
      EXPECT_TRUE(at::equal(pieces.expert_grads[i], whole.expert_grads[i]))
          << chunks << " chunks: expert gradient " << i;
  }
}

// moe.dispatch per_rank sends a token once to each EP rank holding any of its kept experts:
// the rows sent are the distinct (token, rank) pairs of the routing, counted here from the
// router's choices; per_choice sends one per kept choice.
TEST(ExpertParallelLayer, PerRankDispatchSendsEachTokenOncePerDestinationRank) {
  MoeConfig config = layer_config("softmax", 4, 0.0, "global");  // top-4 of 8: ranks repeat
  ProcessGroups groups = groups_for(config);
  const int64_t ranks = groups.layout.ep_size, per_rank = kExperts / ranks;
  const int me = groups.ep->rank();
  Batch batch = global_batch(groups.layout.world_size);
  const int64_t first_token = groups.layout.world_rank * kTokensPerRank;
  const at::Tensor x = batch.x_GD.narrow(0, first_token, kTokensPerRank);
  for (Dispatch dispatch : {Dispatch::kPerRank, Dispatch::kPerChoice}) {
    config.dispatch = dispatch;
    MoeLayer layer(config, kWidth, at::kDouble, kSeed, groups.ep.get());
    const MoeOutput out = layer.forward(x, true, first_token);
    const at::Tensor experts = out.routing.experts_TK.contiguous();
    std::set<std::pair<int64_t, int64_t>> pairs;
    int64_t to_others = 0, choices_to_others = 0;
    for (int64_t t = 0; t < experts.size(0); ++t)
      for (int64_t k = 0; k < experts.size(1); ++k) {
        const int64_t rank = experts[t][k].item<int64_t>() / per_rank;
        choices_to_others += rank != me;
        if (pairs.insert({t, rank}).second) to_others += rank != me;
      }
    if (dispatch == Dispatch::kPerRank) {
      EXPECT_EQ(out.stats.sent_rows, int64_t(pairs.size()));
      EXPECT_EQ(out.stats.sent_rows_to_others, to_others);
    } else {
      EXPECT_EQ(out.stats.sent_rows, kTokensPerRank * 4);
      EXPECT_EQ(out.stats.sent_rows_to_others, choices_to_others);
    }
  }
}

// This rank's forward and backward of its slice of the batch under `config`: the outputs,
// the input's gradient and every parameter's, in that order.
std::vector<at::Tensor> layer_results(const MoeConfig& config, ProcessGroups& groups,
                                      const Batch& batch) {
  const int64_t first_token = groups.layout.world_rank * kTokensPerRank;
  MoeLayer layer(config, kWidth, at::kDouble, kSeed, groups.ep.get());
  at::Tensor x = batch.x_GD.narrow(0, first_token, kTokensPerRank).clone().set_requires_grad(true);
  MoeOutput out = layer.forward(x, true, first_token);
  (out.y * batch.r_GD.narrow(0, first_token, kTokensPerRank)).sum().backward();
  std::vector<at::Tensor> results = {out.y.detach(), x.grad()};
  for (const auto& p : layer.parameters()) results.push_back(p.tensor.grad());
  return results;
}

// The two dispatches compute the same layer: outputs, the input's, the router's and every
// expert's gradients agree to rounding (the weighted sum is grouped by rank), with drops
// and with expert dropout; and per_rank repeats itself bit for bit.
TEST(ExpertParallelLayer, PerRankDispatchMatchesPerChoiceAndRepeatsBitwise) {
  MoeConfig capped = layer_config("softmax", 2, 0.5, "local");
  capped.drop_policy = DropPolicy::kScore;
  MoeConfig dropout = layer_config("sigmoid", 4, 0.0, "global");
  dropout.expert_dropout = 0.3;
  for (MoeConfig config : {layer_config("softmax", 2, 0.0, "global"), capped, dropout}) {
    ProcessGroups groups = groups_for(config);
    const Batch batch = global_batch(groups.layout.world_size);
    auto run = [&](Dispatch dispatch) {
      config.dispatch = dispatch;
      return layer_results(config, groups, batch);
    };
    const std::vector<at::Tensor> per_rank = run(Dispatch::kPerRank),
                                  again = run(Dispatch::kPerRank),
                                  per_choice = run(Dispatch::kPerChoice);
    ASSERT_EQ(per_rank.size(), per_choice.size());
    for (size_t i = 0; i < per_rank.size(); ++i) {
      EXPECT_LT(relative_error(per_rank[i], per_choice[i]), 1e-12) << "result " << i;
      EXPECT_TRUE(at::equal(per_rank[i], again[i])) << "result " << i << " differs run to run";
    }
  }
}

// The routings the exchange tests cover, each with the shards its reference needs: both
// routers, softmax and sigmoid scores, the balanced, hot and Zipf overrides, capacity drops,
// the receive bound, expert dropout, group-limited routing and, where the EP group has
// experts enough, an EP rank no token chooses.
std::vector<std::pair<MoeConfig, ReferenceShards>> every_routing() {
  MoeConfig capped = layer_config("softmax", 2, 0.5, "local");
  capped.drop_policy = DropPolicy::kScore;
  MoeConfig bounded = overridden("hot:0:1.0", 2);
  bounded.max_receive_factor = 1.5;
  bounded.balance_loss_mode = BalanceLossMode::kLocal;
  MoeConfig dropout = layer_config("sigmoid", 4, 0.0, "global");
  dropout.expert_dropout = 0.3;
  MoeConfig limited = layer_config("sigmoid", 2, 0.0, "global");
  limited.topk_groups = 1;
  limited.num_groups = g_ep_size;
  MoeConfig expert_choice = layer_config("softmax", 2, 1.0, "global");
  expert_choice.router = RouterKind::kExpertChoice;
  std::vector<std::pair<MoeConfig, ReferenceShards>> routings;
  for (const MoeConfig& config :
       {layer_config("softmax", 2, 0.0, "global"), layer_config("sigmoid", 4, 0.0, "global"),
        overridden("balanced", 2), overridden("hot:0:1.0", 2), overridden("zipf:2.0", 2), dropout,
        limited, expert_choice})
    routings.emplace_back(config, ReferenceShards::kPerEpGroup);
  for (const MoeConfig& config : {capped, bounded})
    routings.emplace_back(config, ReferenceShards::kPerRank);
  if (kExperts - kExperts / g_ep_size >= 2)
    routings.emplace_back(overridden("empty_rank:" + std::to_string(g_ep_size - 1), 2),
                          ReferenceShards::kPerEpGroup);
  return routings;
}

// per_rank in pieces (moe.exchange_chunks > 1: shares of each rank's units pipelined with
// the experts) equals the one-rank reference under every routing (every_routing).
TEST(ExpertParallelLayer, PerRankDispatchInChunksMatchesOneRank) {
  for (auto [config, shards] : every_routing()) {
    config.dispatch = Dispatch::kPerRank;
    config.exchange_chunks = 3;
    expect_ep_matches_reference(config, shards);
  }
}

// per_rank in any number of pieces computes what it computes in one: outputs, the input's,
// the router's and every expert's gradients agree to rounding (an expert's weight gradient
// adds its runs grouped by piece); and a chunked run repeats itself bit for bit.
TEST(ExpertParallelLayer, PerRankDispatchInChunksMatchesOnePieceAndRepeatsBitwise) {
  MoeConfig config = layer_config("softmax", 4, 0.0, "global");
  config.dispatch = Dispatch::kPerRank;
  ProcessGroups groups = groups_for(config);
  const Batch batch = global_batch(groups.layout.world_size);
  auto run = [&](int64_t chunks) {
    config.exchange_chunks = chunks;
    return layer_results(config, groups, batch);
  };
  const std::vector<at::Tensor> whole = run(1);
  for (int64_t chunks : {2, 4, 7}) {
    const std::vector<at::Tensor> pieces = run(chunks), again = run(chunks);
    for (size_t i = 0; i < whole.size(); ++i) {
      EXPECT_LT(relative_error(pieces[i], whole[i]), 1e-12) << chunks << " chunks: result " << i;
      EXPECT_TRUE(at::equal(pieces[i], again[i]))
          << chunks << " chunks: result " << i << " differs run to run";
    }
  }
}

// Logs when row exchanges start and are waited for, and counts rows sent to this rank.
struct RecordingCommunicator : ForwardingCommunicator {
  struct Pending : PendingRows {
    std::unique_ptr<PendingRows> inner;
    std::vector<std::string>* log;
    bool progress() override { return inner->progress(); }
    void wait() override {
      log->push_back("wait");
      inner->wait();
    }
  };
  std::vector<std::string> log;
  int64_t rows_to_self = 0;  // rows any exchange sent from this rank to itself

  explicit RecordingCommunicator(Communicator& c) : ForwardingCommunicator(c) {}
  at::Tensor alltoallv_rows(const at::Tensor& rows, const std::vector<int64_t>& send_rows,
                            const std::vector<int64_t>& recv_rows) override {
    log.push_back("blocking exchange");
    rows_to_self += send_rows[size_t(rank())];
    return inner.alltoallv_rows(rows, send_rows, recv_rows);
  }
  std::unique_ptr<PendingRows> start_alltoallv_rows(
      const at::Tensor& send, const std::vector<RowSpan>& send_spans, const at::Tensor& recv,
      const std::vector<RowSpan>& recv_spans) override {
    log.push_back("start");
    rows_to_self += send_spans[size_t(rank())].rows;
    auto pending = std::make_unique<Pending>();
    pending->inner = inner.start_alltoallv_rows(send, send_spans, recv, recv_spans);
    pending->log = &log;
    return pending;
  }
};

// The shared experts' slot (independent_work) runs once, after the dispatched rows set off
// and before the layer waits for them, on the loop and the grouped GEMM path; what it
// computes keeps its gradient (autograd records inside the exchange as at the call).
TEST(ExpertParallelLayer, IndependentWorkRunsWhileTheDispatchedRowsTravelAndKeepsItsGradient) {
  for (ExpertGemm gemm : {ExpertGemm::kLoop, ExpertGemm::kGrouped}) {
    SCOPED_TRACE(gemm == ExpertGemm::kLoop ? "loop" : "grouped");
    MoeConfig config = layer_config("softmax", 2, 0.0, "global");
    config.expert_gemm = gemm;
    config.d_expert = 4;  // the grouped GEMM wants float32 widths that are multiples of 4
    constexpr int64_t kAlignedWidth = 8;
    ProcessGroups groups = groups_for(config);
    RecordingCommunicator ep(*groups.ep);
    MoeLayer layer(config, kAlignedWidth, at::kFloat, kSeed, &ep);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5 + groups.layout.world_rank);
    const at::Tensor x = at::randn({kTokensPerRank, kAlignedWidth}, gen, at::kFloat);
    const at::Tensor w = at::ones({kAlignedWidth}, at::kFloat).set_requires_grad(true);
    at::Tensor side;
    int calls = 0;
    MoeOutput out = layer.forward(x, true, 0, {}, [&] {
      ep.log.push_back("work");
      ++calls;
      side = (x * w).sum();
    });
    EXPECT_EQ(calls, 1);
    const auto at = [&](const std::string& what) {
      return std::find(ep.log.begin(), ep.log.end(), what) - ep.log.begin();
    };
    const int64_t none = int64_t(ep.log.size());
    // The dispatch is the first exchange (the loop path on one rank sends nothing at all).
    if (at("start") < none || at("blocking exchange") < none) {
      EXPECT_LT(at("start"), at("blocking exchange")) << "the dispatch blocked: no overlap";
      EXPECT_LT(at("start"), at("work"));
      EXPECT_LT(at("work"), at("wait"));
    }
    (out.y.sum() + side).backward();
    ASSERT_TRUE(w.grad().defined()) << "the work's graph was not recorded";
    EXPECT_TRUE(at::allclose(w.grad(), x.sum(0)));
  }
}

// A float32 layer's outputs and gradients at the grouped GEMM's aligned widths, with the
// rows any exchange sent a rank to itself and the exchanges started without blocking.
struct GemmResult {
  at::Tensor y, grad_x;
  std::vector<at::Tensor> grads;
  int64_t rows_to_self, started;
};

GemmResult gemm_results(MoeConfig config, bool recompute = false) {
  constexpr int64_t kAlignedWidth = 8;
  config.d_expert = 4;  // the grouped GEMM wants float32 widths that are multiples of 4
  ProcessGroups groups = groups_for(config);
  RecordingCommunicator ep(*groups.ep);
  MoeLayer layer(config, kAlignedWidth, at::kFloat, kSeed, &ep);
  layer.set_recompute_experts(recompute);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5 + groups.layout.world_rank);
  const at::Tensor x =
      at::randn({kTokensPerRank, kAlignedWidth}, gen, at::kFloat).set_requires_grad(true);
  const MoeOutput out = layer.forward(x, true);
  (out.y * at::arange(kAlignedWidth, at::kFloat)).sum().backward();
  GemmResult r{out.y.detach(),
               x.grad(),
               {},
               ep.rows_to_self,
               std::count(ep.log.begin(), ep.log.end(), "start")};
  for (const auto& p : layer.experts().parameters()) r.grads.push_back(p.tensor.grad());
  return r;
}

// Float32 rounding: the two paths add the same products in different orders.
void expect_same_layer(const GemmResult& a, const GemmResult& b) {
  EXPECT_TRUE(at::allclose(a.y, b.y, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(a.grad_x, b.grad_x, 1e-5, 1e-6));
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i)
    EXPECT_TRUE(at::allclose(a.grads[i], b.grads[i], 1e-5, 1e-6)) << "weight " << i;
}

// The grouped GEMM path keeps each rank's own rows home, as the loop path does (no
// exchange, forward or backward, sends a row to its own rank), and gives the loop path's
// outputs and gradients (float32: the grouped GEMM's dtypes).
TEST(ExpertParallelLayer, GroupedGemmKeepsOwnRowsHomeAndMatchesTheLoopPath) {
  MoeConfig config = layer_config("softmax", 2, 0.0, "global");
  auto run = [&](ExpertGemm gemm) {
    config.expert_gemm = gemm;
    return gemm_results(config);
  };
  const GemmResult loop = run(ExpertGemm::kLoop), grouped = run(ExpertGemm::kGrouped);
  EXPECT_EQ(loop.rows_to_self, 0);
  EXPECT_EQ(grouped.rows_to_self, 0) << "the grouped path sent its own rows through the exchange";
  expect_same_layer(grouped, loop);
}

// In pieces (moe.exchange_chunks = 3) the grouped GEMM path runs the pipeline too, one
// grouped GEMM per matrix over each piece, on both dispatches and both expert types, with
// experts that get no rows in a piece (a hot expert, a capacity), expert dropout: the loop
// path's results, every exchange started without blocking, no row sent to its own rank.
TEST(ExpertParallelLayer, GroupedGemmInChunksPipelinesAndMatchesTheLoopPath) {
  MoeConfig gelu = layer_config("sigmoid", 4, 0.0, "global");
  gelu.expert_type = ExpertType::kGelu;
  MoeConfig capped = layer_config("softmax", 2, 0.5, "local");
  capped.drop_policy = DropPolicy::kScore;
  MoeConfig dropout = layer_config("sigmoid", 2, 0.0, "global");
  dropout.expert_dropout = 0.3;
  for (Dispatch dispatch : {Dispatch::kPerChoice, Dispatch::kPerRank}) {
    for (MoeConfig config : {layer_config("softmax", 2, 0.0, "global"), gelu,
                             overridden("hot:0:0.8", 2), capped, dropout}) {
      SCOPED_TRACE(std::string(dispatch == Dispatch::kPerRank ? "per_rank" : "per_choice") +
                   ", top-" + std::to_string(config.top_k));
      config.dispatch = dispatch;
      config.exchange_chunks = 3;
      config.expert_gemm = ExpertGemm::kLoop;
      const GemmResult loop = gemm_results(config);
      config.expert_gemm = ExpertGemm::kGrouped;
      const GemmResult grouped = gemm_results(config);
      expect_same_layer(grouped, loop);
      EXPECT_EQ(grouped.rows_to_self, 0);
      // (One rank has nothing to pipeline: there the grouped path is the unchunked one.)
      if (g_ep_size > 1)
        EXPECT_EQ(grouped.started, loop.started) << "the grouped path did not pipeline";
    }
  }
}

// train.recompute experts: backward makes the experts' hidden pre-activations again
// instead of keeping them. Outputs and every gradient are the same bits, on the loop and
// the grouped GEMM paths, in one piece and in chunks, on both dispatches and expert types.
TEST(ExpertParallelLayer, RecomputedExpertActivationsGiveTheSameGradientsBitwise) {
  MoeConfig gelu = layer_config("sigmoid", 4, 0.0, "global");
  gelu.expert_type = ExpertType::kGelu;
  for (ExpertGemm gemm : {ExpertGemm::kLoop, ExpertGemm::kGrouped})
    for (int64_t chunks : {1, 3})
      for (Dispatch dispatch : {Dispatch::kPerChoice, Dispatch::kPerRank})
        for (MoeConfig config : {layer_config("softmax", 2, 0.0, "global"), gelu}) {
          SCOPED_TRACE(std::string(gemm == ExpertGemm::kLoop ? "loop" : "grouped") + ", " +
                       std::to_string(chunks) + " chunk(s), top-" + std::to_string(config.top_k));
          config.expert_gemm = gemm;
          config.exchange_chunks = chunks;
          config.dispatch = dispatch;
          const int64_t before = recomputed_expert_rows();
          const GemmResult kept = gemm_results(config);
          EXPECT_EQ(recomputed_expert_rows(), before);
          const GemmResult recomputed = gemm_results(config, /*recompute=*/true);
          EXPECT_GT(recomputed_expert_rows(), before) << "backward recomputed nothing";
          EXPECT_TRUE(at::equal(recomputed.y, kept.y));
          EXPECT_TRUE(at::equal(recomputed.grad_x, kept.grad_x));
          for (size_t i = 0; i < kept.grads.size(); ++i)
            EXPECT_TRUE(at::equal(recomputed.grads[i], kept.grads[i])) << "weight " << i;
        }
}

// The receive bound with every assignment on expert 0: rank 0 receives at most
// floor(factor * T * K) rows, each source drops T*K - quota, and the layer equals the
// reference applying the same rule to each rank's tokens.
TEST(ExpertParallelLayer, ReceiveBoundHoldsUnderFullSkewAndMatchesOneRank) {
  MoeConfig config = overridden("hot:0:1.0", 2);
  config.max_receive_factor = 1.5;
  config.balance_loss_mode = BalanceLossMode::kLocal;
  ProcessGroups groups = groups_for(config);
  const int64_t P = g_ep_size, T = kTokensPerRank, K = 2;
  const int64_t quota = int64_t(1.5 * T * K / P + 1e-9);
  MoeLayer layer(config, kWidth, at::kDouble, kSeed, groups.ep.get());
  Batch batch = global_batch(groups.layout.world_size);
  MoeOutput out = layer.forward(batch.x_GD.narrow(0, groups.layout.world_rank * T, T), true,
                                groups.layout.world_rank * T);
  EXPECT_EQ(out.stats.receive_quota, quota);
  ASSERT_EQ(int64_t(out.stats.bound_dropped_per_rank.size()), P);
  EXPECT_EQ(out.stats.bound_dropped_per_rank[0], std::max<int64_t>(0, T * K - quota));
  EXPECT_EQ(out.stats.tokens_per_expert[0], std::min(T * K, quota));
  at::Tensor received = at::tensor(out.stats.tokens_per_expert, at::kDouble);
  groups.ep->allreduce_sum_(received);
  EXPECT_LE(received[0].item<double>(), 1.5 * T * K) << "rank 0 received more than its bound";
  expect_ep_matches_reference(config, ReferenceShards::kPerRank);
}

// The EP group's ranks as hosts, every way these worlds allow: hosts of 2 consecutive ranks,
// of 2 ranks that are not consecutive (0 and 2 share one), and of 1 rank each.
std::vector<std::vector<int>> host_layouts() {
  const int ranks = int(g_ep_size);
  std::vector<std::vector<int>> layouts = {VirtualHosts::consecutive(ranks, 1)};
  if (ranks % 2 == 0) {
    layouts.push_back(VirtualHosts::consecutive(ranks, 2));
    std::vector<int> interleaved;
    for (int r = 0; r < ranks; ++r) interleaved.push_back(r % (ranks / 2));
    layouts.push_back(interleaved);
  }
  return layouts;
}

// moe.exchange hierarchical equals the one-rank reference (float64, 1e-10) under every
// routing the layer tests cover, on every host layout, with the fan-out on each host in
// one piece and in three.
TEST(ExpertParallelLayer, HierarchicalExchangeMatchesOneRankUnderEveryRouting) {
  for (const std::vector<int>& hosts : host_layouts())
    for (int64_t chunks : {1, 3}) {
      SCOPED_TRACE("hosts " + ::testing::PrintToString(hosts) + ", " + std::to_string(chunks) +
                   " chunk(s)");
      for (auto [config, shards] : every_routing()) {
        config.exchange = Exchange::kHierarchical;
        config.exchange_chunks = chunks;
        expect_ep_matches_reference(config, shards, 0, hosts);
      }
    }
}

// A token crosses to another host once per destination host, and only to the rank of its
// own place there: the rows sent are the distinct (token, host) pairs of the routing, counted
// here from the router's choices, and every other rank of a remote host receives none.
TEST(ExpertParallelLayer, HierarchicalExchangeSendsEachTokenOncePerDestinationHost) {
  MoeConfig config = layer_config("softmax", 4, 0.0, "global");
  config.exchange = Exchange::kHierarchical;
  ProcessGroups groups = groups_for(config);
  const int64_t per_rank = kExperts / groups.layout.ep_size;
  const int me = groups.ep->rank();
  const Batch batch = global_batch(groups.layout.world_size);
  const int64_t first_token = groups.layout.world_rank * kTokensPerRank;
  for (const std::vector<int>& hosts : host_layouts()) {
    SCOPED_TRACE("hosts " + ::testing::PrintToString(hosts));
    VirtualHosts on_hosts(*groups.ep, hosts);
    MoeLayer layer(config, kWidth, at::kDouble, kSeed, &on_hosts);
    const MoeOutput out =
        layer.forward(batch.x_GD.narrow(0, first_token, kTokensPerRank), true, first_token);
    const at::Tensor experts = out.routing.experts_TK.contiguous();
    std::set<std::pair<int64_t, int>> pairs;
    int64_t to_other_hosts = 0;
    for (int64_t t = 0; t < experts.size(0); ++t)
      for (int64_t k = 0; k < experts.size(1); ++k) {
        const int host = hosts[size_t(experts[t][k].item<int64_t>() / per_rank)];
        if (pairs.insert({t, host}).second) to_other_hosts += host != hosts[size_t(me)];
      }
    EXPECT_EQ(out.stats.sent_rows, int64_t(pairs.size()));
    EXPECT_EQ(out.stats.sent_rows_to_others, to_other_hosts);
    const HostLevels& levels = on_hosts.host_levels();
    for (int r = 0; r < int(hosts.size()); ++r)
      if (levels.place_of_rank[size_t(r)] != levels.place_of_rank[size_t(me)])
        EXPECT_EQ(out.stats.sent_rows_per_rank[size_t(r)], 0) << "rows to rank " << r;
  }
}

// The hierarchical and the flat exchange compute the same layer (outputs, the input's, the
// router's and every expert's gradients agree to rounding: the sum is grouped by host), and
// the hierarchical one repeats itself bit for bit.
TEST(ExpertParallelLayer, HierarchicalExchangeMatchesFlatAndRepeatsBitwise) {
  MoeConfig dropout = layer_config("sigmoid", 4, 0.0, "global");
  dropout.expert_dropout = 0.3;
  ProcessGroups groups = groups_for(dropout);
  const Batch batch = global_batch(groups.layout.world_size);
  for (MoeConfig config : {layer_config("softmax", 2, 0.0, "global"), dropout})
    for (const std::vector<int>& hosts : host_layouts()) {
      SCOPED_TRACE("hosts " + ::testing::PrintToString(hosts) + ", dropout " +
                   std::to_string(config.expert_dropout));
      auto run = [&](Exchange exchange) {
        config.exchange = exchange;
        VirtualHosts on_hosts(*groups.ep, hosts);
        const int64_t first_token = groups.layout.world_rank * kTokensPerRank;
        MoeLayer layer(config, kWidth, at::kDouble, kSeed, &on_hosts);
        at::Tensor x =
            batch.x_GD.narrow(0, first_token, kTokensPerRank).clone().set_requires_grad(true);
        MoeOutput out = layer.forward(x, true, first_token);
        (out.y * batch.r_GD.narrow(0, first_token, kTokensPerRank)).sum().backward();
        std::vector<at::Tensor> results = {out.y.detach(), x.grad()};
        for (const auto& p : layer.parameters()) results.push_back(p.tensor.grad());
        return results;
      };
      const std::vector<at::Tensor> by_host = run(Exchange::kHierarchical),
                                    again = run(Exchange::kHierarchical),
                                    flat = run(Exchange::kFlat);
      ASSERT_EQ(by_host.size(), flat.size());
      for (size_t i = 0; i < by_host.size(); ++i) {
        EXPECT_LT(relative_error(by_host[i], flat[i]), 1e-12)
            << "result " << i << by_host[i] << flat[i];
        EXPECT_TRUE(at::equal(by_host[i], again[i])) << "result " << i << " differs run to run";
      }
    }
}

// Hosts holding different numbers of the EP group's ranks cannot form the two levels: an
// explicit hierarchical exchange says so and why; auto falls back to flat and says why.
TEST(ExpertParallelLayer, HierarchicalExchangeOnUnevenHostsIsRefusedAndAutoStaysFlat) {
  if (g_ep_size < 3) GTEST_SKIP() << "uneven hosts need at least 3 EP ranks";
  MoeConfig config = layer_config("softmax", 2, 0.0, "global");
  ProcessGroups groups = groups_for(config);
  std::vector<int> hosts(size_t(g_ep_size), 0);
  hosts.back() = 1;
  VirtualHosts on_hosts(*groups.ep, hosts);
  try {
    choose_exchange(Exchange::kHierarchical, on_hosts);
    ADD_FAILURE() << "hierarchical on uneven hosts was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different numbers of its ranks (" +
                                         std::to_string(g_ep_size - 1) + ", 1)"),
              std::string::npos)
        << e.what();
  }
  const ExchangeChoice automatic = choose_exchange(Exchange::kAuto, on_hosts);
  EXPECT_FALSE(automatic.hierarchical);
  EXPECT_NE(automatic.why.find("different numbers"), std::string::npos) << automatic.why;
}

// auto: hierarchical exactly when the EP group spans several hosts of several ranks each.
TEST(ExpertParallelLayer, AutoExchangeIsHierarchicalOnSeveralHostsOfSeveralRanks) {
  MoeConfig config = layer_config("softmax", 2, 0.0, "global");
  ProcessGroups groups = groups_for(config);
  const int ranks = int(g_ep_size);
  for (int per_host : {1, 2, ranks}) {
    if (ranks % per_host != 0) continue;
    VirtualHosts on_hosts(*groups.ep, VirtualHosts::consecutive(ranks, per_host));
    const ExchangeChoice choice = choose_exchange(Exchange::kAuto, on_hosts);
    EXPECT_EQ(choice.hierarchical, per_host > 1 && per_host < ranks)
        << per_host << " ranks per host: " << choice.why;
    EXPECT_FALSE(choose_exchange(Exchange::kAuto, on_hosts, /*on_gpu=*/true).hierarchical)
        << "auto on GPUs, " << per_host << " ranks per host";
  }
}

}  // namespace
}  // namespace triage
