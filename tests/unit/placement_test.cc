// Rank placement arithmetic: GPUs by local rank, threads from the host's cores.
#include <gtest/gtest.h>

#include "parallel/placement.h"
#include "test_support.h"

namespace triage {
namespace {

using testing_support::error_of;

TEST(Placement, SharesTheGivenCpusBetweenTheRanksGivenThem) {
  EXPECT_EQ(plan_placement(0, "a", 0, 4, CpuBudget{16, 4}, 0, false, 0).threads, 4);
  EXPECT_EQ(plan_placement(0, "a", 0, 4, CpuBudget{2, 4}, 0, false, 0).threads,
            1);  // oversubscribed: at least one
  const RankPlacement set = plan_placement(0, "a", 0, 4, CpuBudget{16, 4}, 3, false, 0);
  EXPECT_EQ(set.threads, 3);  // parallel.intra_op_threads wins
  EXPECT_EQ(set.cpu_budget.describe(), "set");
}

TEST(Placement, RunsOnTheCpuWithoutGpus) {
  EXPECT_EQ(plan_placement(5, "a", 1, 2, CpuBudget{8, 2}, 0, false, 8).gpu, -1);
}

TEST(Placement, GivesEachLocalRankItsOwnGpu) {
  EXPECT_EQ(plan_placement(9, "b", 1, 4, CpuBudget{64, 4}, 0, true, 8).gpu, 1);
  EXPECT_EQ(plan_placement(11, "b", 3, 4, CpuBudget{64, 4}, 0, true, 4).gpu, 3);
}

TEST(Placement, RefusesMoreRanksOnAHostThanItsGpus) {
  EXPECT_EQ(error_of([] {
              plan_placement(0, "node7", 0, 4, CpuBudget{64, 4}, 0, true, 2);
            }),
            "host node7 runs 4 ranks but sees 2 GPU(s) shared by all of them; expected at "
            "most one rank per GPU (--ranks-per-node 2), or each rank bound to its own GPU");
}

// Slurm --gpus-per-task: 4 ranks on a host, each seeing one GPU, a different one.
TEST(Placement, AcceptsOneVisibleGpuPerRankWhenEachIsItsOwn) {
  const RankPlacement p =
      plan_placement(2, "c", 2, 4, CpuBudget{64, 4}, 0, true, 1, /*own_gpu=*/true);
  EXPECT_EQ(p.gpu, 0);
  EXPECT_EQ(p.binding, GpuBinding::kOwnGpu);
  EXPECT_EQ(plan_placement(2, "c", 2, 4, CpuBudget{64, 4}, 0, true, 4).binding,
            GpuBinding::kLocalRank);
  EXPECT_EQ(gpu_binding_line({p}),
            "GPUs: each rank sees only its own GPU (per-task binding), device 0");
  EXPECT_EQ(gpu_binding_line({plan_placement(0, "c", 0, 1, CpuBudget{4, 1}, 0, false, 0)}), "");
}

TEST(Placement, OwnGpuMeansOneVisibleEachAndNoTwoTheSame) {
  EXPECT_TRUE(
      each_rank_has_its_own_gpu({1, 1, 1}, {"0000:3b:00.0", "0000:5e:00.0", "0000:86:00.0"}));
  EXPECT_FALSE(each_rank_has_its_own_gpu({1, 1}, {"0000:3b:00.0", "0000:3b:00.0"}))
      << "two ranks on one GPU";
  EXPECT_FALSE(each_rank_has_its_own_gpu({1, 2}, {"0000:3b:00.0", "0000:5e:00.0"}))
      << "a rank that sees two";
  EXPECT_FALSE(each_rank_has_its_own_gpu({1}, {"0000:3b:00.0"})) << "one rank: the plain rule";
}

TEST(Placement, PrintsOneRowPerRank) {
  std::string table = placement_table({{0, "h1", 0, 2, -1, 1}, {1, "h1", 1, 2, 0, 8}});
  EXPECT_NE(table.find("   0  h1     0/2      cpu        1"), std::string::npos) << table;
  EXPECT_NE(table.find("   1  h1     1/2   cuda:0        8"), std::string::npos) << table;
}

}  // namespace
}  // namespace triage
