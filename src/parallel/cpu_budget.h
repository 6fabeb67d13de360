// How many LibTorch threads a rank may run: the CPUs it is given, not the node's. A rank is
// given the CPUs of its affinity mask (Slurm's cpuset and --cpus-per-task, taskset, mpirun's
// binding, a container's cpuset), shared with the ranks of its host whose masks overlap it,
// and no more than its cgroup's CPU quota (a container's --cpus), shared by the host's ranks.
#pragma once

#include <sched.h>

#include <string>
#include <vector>

namespace triage {

// Where a rank's CPU count came from.
enum class CpuSource {
  kRequested,  // parallel.intra_op_threads (or a benchmark's --threads)
  kAffinity,   // the affinity mask
  kQuota,      // the cgroup CPU quota
};

struct CpuBudget {
  int cpus = 1;           // CPUs for the ranks that share them
  int sharing_ranks = 1;  // ranks of this host that share those CPUs
  CpuSource source = CpuSource::kAffinity;

  int threads() const;  // cpus / sharing_ranks, at least 1
  // "1 CPU (affinity mask) / 2 ranks", "2 CPUs (cgroup quota) / 4 ranks", "set".
  std::string describe() const;
};

// The budget from what a rank sees. mask_cpus: CPUs in its mask; ranks_sharing_mask: ranks of
// its host whose masks overlap it, itself included; quota_cpus: the cgroup quota in whole CPUs
// (0: none); ranks_on_host: every rank of the host (the quota is the host's cgroup's). The
// smaller share wins.
CpuBudget choose_cpu_budget(int mask_cpus, int ranks_sharing_mask, int quota_cpus,
                            int ranks_on_host);

// cgroup v2's cpu.max ("QUOTA PERIOD" or "max PERIOD") in whole CPUs, rounded up; 0 for
// "max" or text that is not a quota.
int cpus_in_cpu_max(const std::string& text);

// The tightest CPU quota over this process's cgroup and its parents (cgroup v2; v1's
// cpu.cfs_quota_us otherwise), in whole CPUs; 0 when none is set or none can be read.
int cgroup_cpu_quota();

// This process's affinity mask (every CPU the machine reports when it cannot be read).
cpu_set_t affinity_mask();

// The CPUs a host's ranks are given together: every CPU in some rank's mask (a rank bound to
// one core still shares the host's), no more than the cgroup quota when one is set (> 0).
int host_cpus(const std::vector<cpu_set_t>& masks, int quota_cpus);

// How many of `masks` overlap `mine` (itself counted when it is among them).
int ranks_overlapping(const cpu_set_t& mine, const std::vector<cpu_set_t>& masks);

}  // namespace triage
