// Where each rank runs: its host, its rank among the ranks on that host (from
// MPI_Comm_split_type, i.e. shared memory), its GPU (local rank modulo the visible GPUs)
// and its CPU threads (the host's cores shared by its ranks). Rank 0 prints the map at
// start, so a user sees at once how a multi-node or multi-GPU job was laid out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace triage {

struct RankPlacement {
  int rank = 0;
  std::string host;
  int local_rank = 0, local_size = 1;  // among the ranks on this host
  int gpu = -1;                        // CUDA device index; -1: runs on the CPU
  int threads = 1;                     // LibTorch intra-op threads
};

// Pure arithmetic, testable without MPI. requested_threads 0: cores / local ranks, at
// least 1. With use_gpus, throws Error when a host has more ranks than visible GPUs.
RankPlacement plan_placement(int rank, const std::string& host, int local_rank, int local_size,
                             int cores, int64_t requested_threads, bool use_gpus, int visible_gpus);

// Collective over MPI_COMM_WORLD: finds this rank's host and local rank, plans, selects
// the GPU (when used) and sets LibTorch's thread count. Returns every rank's placement
// on rank 0 (this rank's alone elsewhere).
std::vector<RankPlacement> place_ranks(int64_t requested_threads, bool use_gpus);

// One line on the runtime: MPI library and thread level, CUDA runtime and NCCL versions
// and GPUs when built with them; a warning when MPI gave less than MPI_THREAD_FUNNELED.
std::string environment_line();

// "rank  host  local  device  threads" as an aligned table.
std::string placement_table(const std::vector<RankPlacement>& placements);

}  // namespace triage
