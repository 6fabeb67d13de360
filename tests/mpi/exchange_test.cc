// The exchange under mpirun: dispatch + the pipelined row exchange + combine is the
// identity (values and gradients) in one piece or several, every row the grouped path
// receives is exactly what its sender meant for this rank's expert, and uneven loads
// (empty ranks, one hot expert) work.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "communicator_checks.h"
#include "moe/exchange.h"
#include "mpi_test_support.h"
#include "parallel/autograd_collectives.h"
#include "parallel/mpi_communicator.h"

namespace triage {
namespace {

using namespace testing_support;

constexpr int64_t kExperts = 8, kWidth = 3;

at::Generator generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// K distinct random experts per token.
at::Tensor random_choices(int64_t tokens, int64_t k, at::Generator& gen) {
  std::vector<at::Tensor> rows;
  for (int64_t t = 0; t < tokens; ++t) rows.push_back(at::randperm(kExperts, gen).narrow(0, 0, k));
  return rows.empty() ? at::zeros({0, k}, at::kLong) : at::stack(rows);
}

// Dispatch, pass rows through unchanged, combine with weights 1/K; checks y == x and
// d(sum(y * R))/dx == R.
void expect_round_trip_is_identity(const at::Tensor& experts_TK, at::Generator& gen,
                                   int64_t chunks = 1) {
  ProcessGroups groups = groups_for(ep_moe_config(kExperts, experts_TK.size(1)));
  const int64_t tokens = experts_TK.size(0), k = experts_TK.size(1);
  at::Tensor x = at::randn({tokens, kWidth}, gen, at::kDouble).set_requires_grad(true);
  at::Tensor keep = at::ones({tokens, k}, at::kBool);
  at::Tensor weights = at::full({tokens, k}, 1.0 / double(k), at::kDouble);

  Dispatched sent = dispatch(x, experts_TK, keep, kExperts, *groups.ep, chunks);
  at::Tensor y =
      combine(exchange_rows(sent.x_RD, sent.plan.layout, *groups.ep), weights, sent.plan);
  at::Tensor r = at::randn({tokens, kWidth}, gen, at::kDouble);
  (y * r).sum().backward();

  if (tokens == 0) return;
  EXPECT_LT((y - x).abs().max().item<double>(), 1e-15);
  EXPECT_LT((x.grad() - r).abs().max().item<double>(), 1e-15);
}

TEST(Exchange, RoundTripReturnsInputAndGradientForTopOne) {
  int rank = groups_for(ep_moe_config(kExperts, 1)).layout.world_rank;
  at::Generator gen = generator(100 + rank);
  expect_round_trip_is_identity(random_choices(7 + rank, 1, gen), gen);
}

TEST(Exchange, RoundTripReturnsInputAndGradientForTopTwo) {
  int rank = groups_for(ep_moe_config(kExperts, 2)).layout.world_rank;
  at::Generator gen = generator(200 + rank);
  expect_round_trip_is_identity(random_choices(5 + 3 * rank, 2, gen), gen);
}

TEST(Exchange, RoundTripInSeveralChunksReturnsInputAndGradient) {
  int rank = groups_for(ep_moe_config(kExperts, 2)).layout.world_rank;
  at::Generator gen = generator(600 + rank);
  for (int64_t chunks : {2, 3, 8})
    expect_round_trip_is_identity(random_choices(9 + rank, 2, gen), gen, chunks);
}

TEST(Exchange, RankWithNoTokensStillTakesPart) {
  int rank = groups_for(ep_moe_config(kExperts, 2)).layout.world_rank;
  at::Generator gen = generator(300 + rank);
  expect_round_trip_is_identity(random_choices(rank % 2 == 0 ? 4 : 0, 2, gen), gen);
}

TEST(Exchange, MoreRanksThanTokensWorks) {
  int rank = groups_for(ep_moe_config(kExperts, 1)).layout.world_rank;
  at::Generator gen = generator(500 + rank);
  expect_round_trip_is_identity(random_choices(rank == 0 ? 1 : 0, 1, gen), gen);
}

TEST(Exchange, EveryTokenChoosingTheLastExpertGoesToOneRank) {
  ProcessGroups groups = groups_for(ep_moe_config(kExperts, 1));
  at::Generator gen = generator(400 + groups.layout.world_rank);
  at::Tensor choices = at::full({6, 1}, kExperts - 1, at::kLong);
  expect_round_trip_is_identity(choices, gen);

  Dispatched sent = dispatch(at::zeros({6, kWidth}, at::kDouble), choices,
                             at::ones({6, 1}, at::kBool), kExperts, *groups.ep);
  const bool owns_last = groups.layout.ep_rank == groups.layout.ep_size - 1;
  int64_t own_rows = 0;
  for (const ExpertRowRun& run : sent.plan.layout.own_runs) own_rows += run.rows;
  EXPECT_EQ(own_rows, owns_last ? 6 : 0);
  EXPECT_EQ(sent.plan.layout.received_rows, owns_last ? 6 * (groups.layout.ep_size - 1) : 0);
}

// Token t of EP rank p carries value code(p, t) + d / 1000 in column d, and chooses the
// experts choice(p, t, j): any rank can recompute both for every token in its EP group.
double code(int64_t rank, int64_t token) { return 1000.0 * double(rank) + double(token); }
int64_t choice(int64_t rank, int64_t token, int64_t j) {
  return (3 * rank + 5 * token + 3 * j) % kExperts;
}

TEST(Exchange, EveryRowThePipelineReceivesIsWhatItsSenderMeantForThisExpert) {
  const int64_t k = 2;
  ProcessGroups groups = groups_for(ep_moe_config(kExperts, k));
  const int64_t me = groups.layout.ep_rank, ranks = groups.layout.ep_size;
  const int64_t local = kExperts / ranks;
  auto tokens_of = [](int64_t rank) { return 4 + 3 * rank; };

  at::Tensor x = at::empty({tokens_of(me), kWidth}, at::kDouble);
  at::Tensor choices = at::empty({tokens_of(me), k}, at::kLong);
  for (int64_t t = 0; t < tokens_of(me); ++t) {
    for (int64_t d = 0; d < kWidth; ++d) x[t][d] = code(me, t) + double(d) / 1000;
    for (int64_t j = 0; j < k; ++j) choices[t][j] = choice(me, t, j);
  }
  Dispatched sent =
      dispatch(x, choices, at::ones({tokens_of(me), k}, at::kBool), kExperts, *groups.ep);
  // Every row, own ones included, by source rank.
  const at::Tensor received =
      alltoallv_rows_autograd(sent.x_RD, *groups.ep, sent.plan.send_rows, sent.plan.recv_rows);

  // Expected: rank-major, then local expert, then token order; the one piece's runs must
  // say so for the other ranks' rows (at their rows of the receive buffer, which holds no
  // own rows) and the own runs for this rank's own (kept home, at their packed rows).
  int64_t wrong = 0, row = 0;
  std::vector<ExpertRun> expected_runs, expected_own_runs;
  std::vector<int64_t> expected_offsets, expected_own_offsets;
  int64_t own_rows_before = 0;  // own rows received before a run: not in the receive buffer
  // The own rows lie in the packed buffer after the rows this rank sends lower ranks, and
  // in the all-rows receive buffer after the rows lower ranks send it.
  int64_t sent_below = 0, received_below = 0;
  for (int64_t t = 0; t < tokens_of(me); ++t)
    for (int64_t j = 0; j < k; ++j) sent_below += choice(me, t, j) / local < me;
  for (int64_t p = 0; p < me; ++p)
    for (int64_t t = 0; t < tokens_of(p); ++t)
      for (int64_t j = 0; j < k; ++j) received_below += choice(p, t, j) / local == me;
  for (int64_t p = 0; p < ranks; ++p) {
    for (int64_t l = 0; l < local; ++l) {
      const int64_t expert = me * local + l, first_row = row;
      for (int64_t t = 0; t < tokens_of(p); ++t) {
        bool chose = false;
        for (int64_t j = 0; j < k; ++j) chose |= choice(p, t, j) == expert;
        if (!chose) continue;
        for (int64_t d = 0; d < kWidth && row < received.size(0); ++d)
          wrong += received[row][d].item<double>() != code(p, t) + double(d) / 1000;
        ++row;
      }
      if (row == first_row) continue;
      if (p == me) {
        expected_own_runs.push_back({l, row - first_row});
        expected_own_offsets.push_back(sent_below + first_row - received_below);
        own_rows_before += row - first_row;
      } else {
        expected_runs.push_back({l, row - first_row});
        expected_offsets.push_back(first_row - own_rows_before);
      }
    }
  }
  const ExpertLayout& layout = sent.plan.layout;
  const std::vector<ExpertRowRun> no_runs;
  const std::vector<ExpertRowRun>& chunk_runs =
      layout.chunks.empty() ? no_runs : layout.chunks[0].runs;
  for (const auto& [runs, expected, offsets] :
       {std::tuple{&chunk_runs, &expected_runs, &expected_offsets},
        std::tuple{&layout.own_runs, &expected_own_runs, &expected_own_offsets}}) {
    ASSERT_EQ(runs->size(), expected->size());
    for (size_t i = 0; i < expected->size(); ++i) {
      EXPECT_EQ((*runs)[i].expert, (*expected)[i].expert) << "run " << i;
      EXPECT_EQ((*runs)[i].rows, (*expected)[i].rows) << "run " << i;
      EXPECT_EQ((*runs)[i].offset, (*offsets)[i]) << "run " << i;
    }
  }
  EXPECT_EQ(row, received.size(0)) << "rows received";
  EXPECT_EQ(wrong, 0) << "wrong elements";
}

// The MPI backend meets the backend checks the NCCL one runs on a GPU (communicator_checks.h),
// here with every peer, gaps between spans and empty peers; bf16 as the rows travel under
// train.precision bf16.
TEST(MpiCommunicator, RowsReachTheirRanksInANewTensorWithEmptyPeers) {
  std::unique_ptr<Communicator> comm = make_mpi_communicator(MPI_COMM_WORLD);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16})
    expect_rows_reach_their_ranks(*comm, at::kCPU, dtype);
}

TEST(MpiCommunicator, StartedRowsLandAtTheirSpansAndLeaveTheGaps) {
  std::unique_ptr<Communicator> comm = make_mpi_communicator(MPI_COMM_WORLD);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16})
    expect_started_rows_land_at_their_spans(*comm, at::kCPU, dtype);
}

TEST(MpiCommunicator, AllReduceSumsOverRanks) {
  std::unique_ptr<Communicator> comm = make_mpi_communicator(MPI_COMM_WORLD);
  expect_allreduce_sums_over_ranks(*comm, at::kCPU, at::kFloat);
}

}  // namespace
}  // namespace triage
