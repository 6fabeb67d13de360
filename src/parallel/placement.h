// Where each rank runs: its host, its rank among the ranks on that host (from
// MPI_Comm_split_type, i.e. shared memory), its GPU (local rank modulo the visible GPUs)
// and its CPU threads (the CPUs it is given, shared by the ranks given the same: cpu_budget.h).
// Rank 0 prints the map at start, so a user sees at once how a multi-node or multi-GPU job was laid
// out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parallel/cpu_budget.h"

namespace triage {

// How a rank found its GPU.
enum class GpuBinding {
  kNone,       // runs on the CPU
  kLocalRank,  // the host's ranks see the same GPUs; rank takes local_rank % visible
  kOwnGpu,     // each rank sees one GPU, its own (Slurm --gpus-per-task, or a launcher
               // setting CUDA_VISIBLE_DEVICES per rank): it takes device 0
};

struct RankPlacement {
  int rank = 0;
  std::string host;
  int local_rank = 0, local_size = 1;  // among the ranks on this host
  int gpu = -1;                        // CUDA device index; -1: runs on the CPU
  int threads = 1;                     // LibTorch intra-op threads
  GpuBinding binding = GpuBinding::kNone;
  CpuBudget cpu_budget;  // where `threads` came from
};

// Pure arithmetic, testable without MPI. requested_threads 0: the budget's threads (its
// CPUs over the ranks that share them, at least 1). own_gpu: every rank on this host sees exactly
// one GPU and no two of them the same one (compared by PCI bus id). With use_gpus, throws Error
// when a host has more ranks than GPUs to give them.
RankPlacement plan_placement(int rank, const std::string& host, int local_rank, int local_size,
                             const CpuBudget& cpus, int64_t requested_threads, bool use_gpus,
                             int visible_gpus, bool own_gpu = false);

// True when each of the host's ranks sees exactly one GPU and their bus ids all differ.
bool each_rank_has_its_own_gpu(const std::vector<int>& visible_per_rank,
                               const std::vector<std::string>& first_bus_id_per_rank);

// The line that says how the GPUs were bound, for the start banner ("" on the CPU).
std::string gpu_binding_line(const std::vector<RankPlacement>& placements);

// Collective over MPI_COMM_WORLD: finds this rank's host and local rank, plans, selects
// the GPU (when used) and sets LibTorch's thread count. Returns every rank's placement
// on rank 0 (this rank's alone elsewhere).
std::vector<RankPlacement> place_ranks(int64_t requested_threads, bool use_gpus);

// One line on the runtime: MPI library and thread level, CUDA runtime and NCCL versions
// and GPUs when built with them; a warning when MPI gave less than MPI_THREAD_FUNNELED.
std::string environment_line();

// "rank  host  local  device  threads  cpus" as an aligned table (cpus: where the threads
// came from, CpuBudget::describe).
std::string placement_table(const std::vector<RankPlacement>& placements);

}  // namespace triage
