// Group arithmetic without MPI: which EP shard and which expert-DP replica each rank is,
// and the errors for layouts that do not fit.
#include <gtest/gtest.h>

#include "common/error.h"
#include "parallel/process_groups.h"

namespace triage {
namespace {

TEST(GroupLayout, WorldFourEpTwoPairsConsecutiveRanks) {
  // EP groups {0,1} {2,3}: ep_rank = position inside, dp_rank = which group.
  const int expected_ep_rank[] = {0, 1, 0, 1};
  const int expected_dp_rank[] = {0, 0, 1, 1};
  for (int rank = 0; rank < 4; ++rank) {
    GroupLayout g = group_layout(4, rank, 2, 8);
    EXPECT_EQ(g.ep_size, 2);
    EXPECT_EQ(g.dp_size, 2);
    EXPECT_EQ(g.ep_rank, expected_ep_rank[rank]) << "rank " << rank;
    EXPECT_EQ(g.dp_rank, expected_dp_rank[rank]) << "rank " << rank;
  }
}

TEST(GroupLayout, EpEqualToWorldHasNoExpertReplicas) {
  GroupLayout g = group_layout(4, 3, 4, 8);
  EXPECT_EQ(g.ep_rank, 3);
  EXPECT_EQ(g.dp_size, 1);
  EXPECT_EQ(g.dp_rank, 0);
}

std::string layout_error(int world, int64_t ep, int64_t experts) {
  try {
    group_layout(world, 0, ep, experts);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GroupLayout, RefusesEpThatDoesNotDivideTheWorld) {
  EXPECT_EQ(layout_error(6, 4, 8),
            "parallel.expert = 4: expected a divisor of the number of ranks (6); run with more "
            "ranks or --set parallel.expert=2");
}

TEST(GroupLayout, RefusesEpThatDoesNotDivideTheExperts) {
  EXPECT_EQ(layout_error(6, 3, 8), "parallel.expert (3) must divide moe.num_experts (8)");
}

}  // namespace
}  // namespace triage
