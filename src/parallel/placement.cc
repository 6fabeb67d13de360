#include "parallel/placement.h"

#include <ATen/Parallel.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "common/check.h"
#include "common/error.h"
#include "cuda/device_query.h"
#include "parallel/agreement.h"
#include "parallel/mpi_environment.h"

namespace triage {

RankPlacement plan_placement(int rank, const std::string& host, int local_rank, int local_size,
                             const CpuBudget& cpus, int64_t requested_threads, bool use_gpus,
                             int visible_gpus, bool own_gpu) {
  RankPlacement p;
  p.rank = rank;
  p.host = host;
  p.local_rank = local_rank;
  p.local_size = local_size;
  p.cpu_budget = cpus;
  if (requested_threads > 0) p.cpu_budget.source = CpuSource::kRequested;
  p.threads = requested_threads > 0 ? int(requested_threads) : cpus.threads();
  if (use_gpus) {
    if (visible_gpus == 0)
      throw Error("train.device = cuda: host " + host +
                  " sees no GPU; expected at least one, or train.device: cpu");
    if (own_gpu) {
      p.gpu = 0;
      p.binding = GpuBinding::kOwnGpu;
      return p;
    }
    if (local_size > visible_gpus)
      throw Error("host " + host + " runs " + std::to_string(local_size) + " ranks but sees " +
                  std::to_string(visible_gpus) +
                  " GPU(s) shared by all of them; expected at most one rank per GPU "
                  "(--ranks-per-node " +
                  std::to_string(visible_gpus) + "), or each rank bound to its own GPU");
    p.gpu = local_rank % visible_gpus;
    p.binding = GpuBinding::kLocalRank;
  }
  return p;
}

bool each_rank_has_its_own_gpu(const std::vector<int>& visible_per_rank,
                               const std::vector<std::string>& first_bus_id_per_rank) {
  if (visible_per_rank.size() < 2) return false;  // one rank: the plain rule serves
  for (int visible : visible_per_rank)
    if (visible != 1) return false;
  std::vector<std::string> ids = first_bus_id_per_rank;
  std::sort(ids.begin(), ids.end());
  return std::adjacent_find(ids.begin(), ids.end()) == ids.end();
}

std::string gpu_binding_line(const std::vector<RankPlacement>& placements) {
  bool own = false, shared = false;
  for (const auto& p : placements) {
    own = own || p.binding == GpuBinding::kOwnGpu;
    shared = shared || p.binding == GpuBinding::kLocalRank;
  }
  if (own && shared) return "GPUs: bound per rank on some hosts, by local rank on others";
  if (own) return "GPUs: each rank sees only its own GPU (per-task binding), device 0";
  if (shared)
    return "GPUs: each host's ranks share its visible GPUs, rank r takes local_rank % GPUs";
  return "";
}

std::vector<RankPlacement> place_ranks(int64_t requested_threads, bool use_gpus) {
  int rank = 0, size = 1;
  TRIAGE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  TRIAGE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
  MPI_Comm node;
  TRIAGE_MPI_CHECK(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
  int local_rank = 0, local_size = 1;
  TRIAGE_MPI_CHECK(MPI_Comm_rank(node, &local_rank));
  TRIAGE_MPI_CHECK(MPI_Comm_size(node, &local_size));
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int host_length = 0;
  TRIAGE_MPI_CHECK(MPI_Get_processor_name(host, &host_length));

  const GpuInfo gpu_info = use_gpus ? query_gpus() : GpuInfo{};
  const int gpus = int(gpu_info.devices.size());
  // Per-task binding shows as one visible GPU per rank, a different one each: the host's
  // ranks compare how many they see and the bus id of the first.
  constexpr int kBusId = 32;
  struct Seen {
    int visible;
    char bus_id[kBusId];
  } seen{gpus, {}};
  if (!gpu_info.bus_ids.empty())
    std::snprintf(seen.bus_id, kBusId, "%s", gpu_info.bus_ids.front().c_str());
  std::vector<Seen> seen_on_host(static_cast<size_t>(local_size));
  TRIAGE_MPI_CHECK(MPI_Allgather(&seen, sizeof seen, MPI_BYTE, seen_on_host.data(), sizeof seen,
                                 MPI_BYTE, node));
  std::vector<int> visible_per_rank;
  std::vector<std::string> bus_ids;
  for (const Seen& s : seen_on_host) {
    visible_per_rank.push_back(s.visible);
    bus_ids.emplace_back(s.bus_id, strnlen(s.bus_id, kBusId));
  }
  const bool own_gpu = use_gpus && each_rank_has_its_own_gpu(visible_per_rank, bus_ids);

  // The CPUs this rank is given, and which of the host's ranks were given the same.
  const cpu_set_t mask = affinity_mask();
  std::vector<cpu_set_t> masks(static_cast<size_t>(local_size));
  TRIAGE_MPI_CHECK(
      MPI_Allgather(&mask, sizeof mask, MPI_BYTE, masks.data(), sizeof mask, MPI_BYTE, node));
  TRIAGE_MPI_CHECK(MPI_Comm_free(&node));
  const CpuBudget budget = choose_cpu_budget(CPU_COUNT(&mask), ranks_overlapping(mask, masks),
                                             cgroup_cpu_quota(), local_size);

  RankPlacement mine;
  agree([&] {  // a host without GPUs is refused once, by its lowest rank
    mine = plan_placement(rank, host, local_rank, local_size, budget, requested_threads, use_gpus,
                          gpus, own_gpu);
  });
  if (mine.gpu >= 0) select_gpu(mine.gpu);
  at::set_num_threads(mine.threads);

  // Fixed-size records to rank 0: ints, then the host name.
  constexpr int kHost = 64;
  struct Record {
    int values[9];
    char host[kHost];
  } record{{mine.rank, mine.local_rank, mine.local_size, mine.gpu, mine.threads, int(mine.binding),
            mine.cpu_budget.cpus, mine.cpu_budget.sharing_ranks, int(mine.cpu_budget.source)},
           {}};
  std::snprintf(record.host, kHost, "%s", mine.host.c_str());
  std::vector<Record> records(rank == 0 ? size : 0);
  TRIAGE_MPI_CHECK(MPI_Gather(&record, sizeof record, MPI_BYTE, records.data(), sizeof record,
                              MPI_BYTE, 0, MPI_COMM_WORLD));
  if (rank != 0) return {mine};
  std::vector<RankPlacement> all;
  for (const Record& r : records)
    all.push_back({r.values[0], std::string(r.host, strnlen(r.host, kHost)), r.values[1],
                   r.values[2], r.values[3], r.values[4], GpuBinding(r.values[5]),
                   CpuBudget{r.values[6], r.values[7], CpuSource(r.values[8])}});
  return all;
}

std::string environment_line() {
  const std::string mpi = mpi_library_version();
  int level = MPI_THREAD_SINGLE;
  TRIAGE_MPI_CHECK(MPI_Query_thread(&level));
  const char* names[] = {"SINGLE", "FUNNELED", "SERIALIZED", "MULTIPLE"};
  std::string line = "runtime: " + mpi + ", thread level " + names[std::clamp(level, 0, 3)];
  if (level < MPI_THREAD_FUNNELED)
    line += " (warning: below FUNNELED; LibTorch threads may disturb MPI)";
  const GpuInfo gpus = query_gpus();
  if (!gpus.cuda_built) return line + "; CUDA path not built";
  line += "; CUDA runtime " + std::to_string(gpus.runtime_version / 1000) + "." +
          std::to_string(gpus.runtime_version % 1000 / 10);
  if (gpus.nccl_version > 0)
    line += ", NCCL " + std::to_string(gpus.nccl_version / 10000) + "." +
            std::to_string(gpus.nccl_version / 100 % 100) + "." +
            std::to_string(gpus.nccl_version % 100);
  line += "; GPUs: " + (gpus.devices.empty() ? "none (" + gpus.no_gpu_reason + ")"
                                             : std::to_string(gpus.devices.size()));
  return line;
}

std::string placement_table(const std::vector<RankPlacement>& placements) {
  size_t host_width = 4;
  for (const auto& p : placements) host_width = std::max(host_width, p.host.size());
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%4s  %-*s  %5s  %6s  %7s  %s\n", "rank", int(host_width),
                "host", "local", "device", "threads", "from");
  out += line;
  for (const auto& p : placements) {
    const std::string device = p.gpu >= 0 ? "cuda:" + std::to_string(p.gpu) : "cpu";
    std::snprintf(line, sizeof line, "%4d  %-*s  %2d/%-2d  %6s  %7d  %s\n", p.rank, int(host_width),
                  p.host.c_str(), p.local_rank, p.local_size, device.c_str(), p.threads,
                  p.cpu_budget.describe().c_str());
    out += line;
  }
  return out;
}

}  // namespace triage
