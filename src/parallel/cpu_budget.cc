// A rank's CPUs from its affinity mask and cgroup quota; see the header.
#include "parallel/cpu_budget.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

namespace triage {

int CpuBudget::threads() const { return std::max(1, cpus / std::max(1, sharing_ranks)); }

std::string CpuBudget::describe() const {
  if (source == CpuSource::kRequested) return "set";
  return std::to_string(cpus) + (cpus == 1 ? " CPU (" : " CPUs (") +
         (source == CpuSource::kQuota ? "cgroup quota" : "affinity mask") + ") / " +
         std::to_string(sharing_ranks) + (sharing_ranks == 1 ? " rank" : " ranks");
}

CpuBudget choose_cpu_budget(int mask_cpus, int ranks_sharing_mask, int quota_cpus,
                            int ranks_on_host) {
  const CpuBudget mask{std::max(1, mask_cpus), std::max(1, ranks_sharing_mask),
                       CpuSource::kAffinity};
  if (quota_cpus <= 0) return mask;
  const CpuBudget quota{quota_cpus, std::max(1, ranks_on_host), CpuSource::kQuota};
  // Compared as fractions: cpus / ranks, without rounding either down first.
  const bool quota_is_tighter =
      int64_t(quota.cpus) * mask.sharing_ranks < int64_t(mask.cpus) * quota.sharing_ranks;
  return quota_is_tighter ? quota : mask;
}

int cpus_in_cpu_max(const std::string& text) {
  std::istringstream in(text);
  std::string quota;
  double period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return 0;
  try {
    const double cpus = std::stod(quota) / period;
    return cpus > 0 ? int(std::ceil(cpus - 1e-9)) : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

namespace {

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The tightest cpu.max from `dir` up to the cgroup v2 root.
int quota_v2(std::string dir) {
  int tightest = 0;
  for (;;) {
    const int cpus = cpus_in_cpu_max(first_line("/sys/fs/cgroup" + dir + "/cpu.max"));
    if (cpus > 0 && (tightest == 0 || cpus < tightest)) tightest = cpus;
    if (dir.empty() || dir == "/") return tightest;
    dir = dir.substr(0, dir.find_last_of('/'));
  }
}

int quota_v1(const std::string& controllers, const std::string& dir) {
  const std::string base = "/sys/fs/cgroup/" + controllers + dir;
  const std::string quota = first_line(base + "/cpu.cfs_quota_us");
  const std::string period = first_line(base + "/cpu.cfs_period_us");
  if (quota.empty() || period.empty() || quota[0] == '-') return 0;
  return cpus_in_cpu_max(quota + " " + period);
}

}  // namespace

int cgroup_cpu_quota() {
  std::ifstream cgroups("/proc/self/cgroup");
  std::string line;
  while (std::getline(cgroups, line)) {
    // "0::/path" (v2) or "N:cpu,cpuacct:/path" (v1)
    const size_t first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const std::string dir = line.substr(second + 1);
    if (controllers.empty()) return quota_v2(dir);
    std::istringstream names(controllers);
    for (std::string name; std::getline(names, name, ',');)
      if (name == "cpu") return quota_v1(controllers, dir);
  }
  return 0;
}

cpu_set_t affinity_mask() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof mask, &mask) == 0 && CPU_COUNT(&mask) > 0) return mask;
  const int cpus = std::max(1, int(std::thread::hardware_concurrency()));
  for (int cpu = 0; cpu < cpus && cpu < CPU_SETSIZE; ++cpu) CPU_SET(cpu, &mask);
  return mask;
}

int host_cpus(const std::vector<cpu_set_t>& masks, int quota_cpus) {
  cpu_set_t all;
  CPU_ZERO(&all);
  for (const cpu_set_t& mask : masks) CPU_OR(&all, &all, &mask);
  const int cpus = CPU_COUNT(&all);
  return quota_cpus > 0 ? std::min(cpus, quota_cpus) : cpus;
}

int ranks_overlapping(const cpu_set_t& mine, const std::vector<cpu_set_t>& masks) {
  int overlapping = 0;
  for (const cpu_set_t& other : masks) {
    cpu_set_t both;
    CPU_AND(&both, &mine, &other);
    overlapping += CPU_COUNT(&both) > 0;
  }
  return overlapping;
}

}  // namespace triage
