// A rank's threads come from the CPUs it is given (affinity mask, cgroup quota), shared by
// the ranks given the same ones, not from the node's CPU count.
#include <gtest/gtest.h>

#include <sched.h>

#include "parallel/cpu_budget.h"

namespace triage {
namespace {

cpu_set_t cpus(std::initializer_list<int> list) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  for (int cpu : list) CPU_SET(cpu, &mask);
  return mask;
}

TEST(CpuBudget, RanksBoundToTheirOwnCpusTakeThemAll) {
  // mpirun --bind-to core on a 4-core host, 2 ranks: each mask holds 2 cores, no overlap.
  const std::vector<cpu_set_t> masks = {cpus({0, 1}), cpus({2, 3})};
  const CpuBudget budget = choose_cpu_budget(2, ranks_overlapping(masks[0], masks), 0, 2);
  EXPECT_EQ(budget.threads(), 2);
  EXPECT_EQ(budget.describe(), "2 CPUs (affinity mask) / 1 rank");
}

TEST(CpuBudget, RanksSharingOneMaskSplitIt) {
  // Two virtual hosts pinned to one core each, two ranks on each: 1 core for 2 ranks.
  const std::vector<cpu_set_t> masks = {cpus({1}), cpus({1})};
  const CpuBudget budget = choose_cpu_budget(1, ranks_overlapping(masks[0], masks), 0, 2);
  EXPECT_EQ(budget.sharing_ranks, 2);
  EXPECT_EQ(budget.threads(), 1);  // never below one
  EXPECT_EQ(budget.describe(), "1 CPU (affinity mask) / 2 ranks");
  // Unbound ranks on a 16-CPU node: all masks are the node's.
  EXPECT_EQ(choose_cpu_budget(16, 4, 0, 4).threads(), 4);
}

TEST(CpuBudget, ACgroupQuotaTighterThanTheMaskWins) {
  // A container limited to 2 CPUs on a 64-CPU node, 2 ranks: 1 thread each, not 32.
  const CpuBudget budget = choose_cpu_budget(64, 2, 2, 2);
  EXPECT_EQ(budget.source, CpuSource::kQuota);
  EXPECT_EQ(budget.threads(), 1);
  EXPECT_EQ(budget.describe(), "2 CPUs (cgroup quota) / 2 ranks");
  // A quota looser than the mask changes nothing.
  EXPECT_EQ(choose_cpu_budget(4, 1, 8, 1).source, CpuSource::kAffinity);
}

TEST(CpuBudget, ReadsCgroupV2CpuMaxInWholeCpusRoundedUp) {
  EXPECT_EQ(cpus_in_cpu_max("max 100000"), 0);
  EXPECT_EQ(cpus_in_cpu_max("200000 100000"), 2);
  EXPECT_EQ(cpus_in_cpu_max("150000 100000"), 2);
  EXPECT_EQ(cpus_in_cpu_max("50000 100000"), 1);
  EXPECT_EQ(cpus_in_cpu_max(""), 0);
  EXPECT_EQ(cpus_in_cpu_max("lots 100000"), 0);
}

TEST(CpuBudget, CountsTheRanksWhoseMasksOverlap) {
  const std::vector<cpu_set_t> masks = {cpus({0, 1}), cpus({1, 2}), cpus({3})};
  EXPECT_EQ(ranks_overlapping(masks[0], masks), 2);
  EXPECT_EQ(ranks_overlapping(masks[2], masks), 1);
}

TEST(CpuBudget, AHostHasEveryCpuOfItsRanksMasksUnderItsQuota) {
  const std::vector<cpu_set_t> masks = {cpus({0}), cpus({1}), cpus({1, 3})};  // 0, 1, 3
  EXPECT_EQ(host_cpus(masks, 0), 3);
  EXPECT_EQ(host_cpus(masks, 2), 2);
  EXPECT_EQ(host_cpus(masks, 8), 3);
}

TEST(CpuBudget, TheAffinityMaskIsThisThreadsOwn) {
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
  int first = 0;
  while (!CPU_ISSET(first, &saved)) ++first;
  const cpu_set_t one = cpus({first});
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  const cpu_set_t seen = affinity_mask();
  EXPECT_EQ(CPU_COUNT(&seen), 1);
  EXPECT_TRUE(CPU_ISSET(first, &seen));
  ASSERT_EQ(sched_setaffinity(0, sizeof saved, &saved), 0);
}

}  // namespace
}  // namespace triage
