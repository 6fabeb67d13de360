// Rank placement arithmetic: GPUs by local rank, threads from the host's cores.
#include <gtest/gtest.h>

#include "parallel/placement.h"
#include "test_support.h"

namespace triage {
namespace {

using testing_support::error_of;

TEST(Placement, SharesTheHostsCoresBetweenItsRanks) {
  EXPECT_EQ(plan_placement(0, "a", 0, 4, 16, 0, false, 0).threads, 4);
  EXPECT_EQ(plan_placement(0, "a", 0, 4, 2, 0, false, 0).threads,
            1);  // oversubscribed: at least one
  EXPECT_EQ(plan_placement(0, "a", 0, 4, 16, 3, false, 0).threads,
            3);  // parallel.intra_op_threads wins
}

TEST(Placement, RunsOnTheCpuWithoutGpus) {
  EXPECT_EQ(plan_placement(5, "a", 1, 2, 8, 0, false, 8).gpu, -1);
}

TEST(Placement, GivesEachLocalRankItsOwnGpu) {
  EXPECT_EQ(plan_placement(9, "b", 1, 4, 64, 0, true, 8).gpu, 1);
  EXPECT_EQ(plan_placement(11, "b", 3, 4, 64, 0, true, 4).gpu, 3);
}

TEST(Placement, RefusesMoreRanksOnAHostThanItsGpus) {
  EXPECT_EQ(error_of([] { plan_placement(0, "node7", 0, 4, 64, 0, true, 2); }),
            "host node7 runs 4 ranks but sees 2 GPU(s); expected at most one rank per GPU "
            "(--ranks-per-node 2)");
}

TEST(Placement, PrintsOneRowPerRank) {
  std::string table = placement_table({{0, "h1", 0, 2, -1, 1}, {1, "h1", 1, 2, 0, 8}});
  EXPECT_NE(table.find("   0  h1     0/2      cpu        1"), std::string::npos) << table;
  EXPECT_NE(table.find("   1  h1     1/2   cuda:0        8"), std::string::npos) << table;
}

}  // namespace
}  // namespace triage
