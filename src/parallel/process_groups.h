// The process groups of an expert-parallel job, from parallel.expert (EP) and the world:
//   world      all ranks
//   ep         EP consecutive ranks that together hold one copy of every expert
//              (consecutive, so a group stays inside a node when ranks are packed per node)
//   expert_dp  the world / EP ranks that hold the same experts (same position in their
//              EP group); expert gradients are averaged over it
// Example, world 4, EP 2: ep groups {0,1} {2,3}; expert_dp groups {0,2} {1,3}.
#pragma once

#include <mpi.h>

#include <functional>
#include <memory>

#include "config/config.h"
#include "parallel/communicator.h"

namespace triage {

struct GroupLayout {
  int world_size = 1, world_rank = 0;
  int ep_size = 1, ep_rank = 0;  // position inside the EP group = which expert shard
  int dp_size = 1, dp_rank = 0;  // which EP group (= position in the expert-DP group)
};

// The global id of the first of this rank's num_experts / ep_size experts.
inline int64_t first_local_expert(const GroupLayout& layout, int64_t num_experts) {
  return layout.ep_rank * (num_experts / layout.ep_size);
}

// Pure arithmetic, testable without MPI. Throws Error when EP does not fit.
GroupLayout group_layout(int world_size, int world_rank, int64_t ep_size, int64_t num_experts);

struct ProcessGroups {
  GroupLayout layout;
  std::unique_ptr<Communicator> world;
  std::unique_ptr<Communicator> ep;
  std::unique_ptr<Communicator> expert_dp;
};

// Makes the communicator of one group: MPI (the default) or NCCL (make_nccl_communicator).
using CommunicatorFactory = std::function<std::unique_ptr<Communicator>(MPI_Comm)>;

// Splits MPI_COMM_WORLD per the config. Collective: every rank must call it.
ProcessGroups make_process_groups(const Config& config, CommunicatorFactory make = nullptr);

}  // namespace triage
