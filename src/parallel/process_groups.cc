// Builds the world / EP / expert-DP communicators with MPI_Comm_split.
#include "parallel/process_groups.h"

#include <numeric>

#include <mpi.h>

#include "common/check.h"
#include "common/error.h"
#include "parallel/mpi_communicator.h"

namespace triage {

GroupLayout group_layout(int world_size, int world_rank, int64_t ep_size, int64_t num_experts) {
  if (ep_size < 1 || world_size % ep_size != 0)
    throw Error("parallel.expert = " + std::to_string(ep_size) +
                ": expected a divisor of the number of ranks (" + std::to_string(world_size) +
                "); run with more ranks or --set parallel.expert=" +
                std::to_string(std::gcd(int64_t(world_size), ep_size)));
  if (num_experts % ep_size != 0)
    throw Error("parallel.expert (" + std::to_string(ep_size) + ") must divide moe.num_experts (" +
                std::to_string(num_experts) + ")");
  GroupLayout g;
  g.world_size = world_size;
  g.world_rank = world_rank;
  g.ep_size = int(ep_size);
  g.ep_rank = world_rank % int(ep_size);
  g.dp_size = world_size / int(ep_size);
  g.dp_rank = world_rank / int(ep_size);
  return g;
}

ProcessGroups make_process_groups(const Config& config, CommunicatorFactory make) {
  if (!make) make = make_mpi_communicator;
  int world_size = 1, world_rank = 0;
  TRIAGE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
  TRIAGE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  ProcessGroups groups;
  groups.layout =
      group_layout(world_size, world_rank, config.parallel.expert, config.moe.num_experts);
  const GroupLayout& g = groups.layout;
  MPI_Comm ep_comm, dp_comm;
  TRIAGE_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, g.dp_rank, g.ep_rank, &ep_comm));
  TRIAGE_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, g.ep_rank, g.dp_rank, &dp_comm));
  groups.world = make(MPI_COMM_WORLD);
  groups.ep = make(ep_comm);
  groups.expert_dp = make(dp_comm);
  TRIAGE_MPI_CHECK(MPI_Comm_free(&ep_comm));  // the communicators hold duplicates
  TRIAGE_MPI_CHECK(MPI_Comm_free(&dp_comm));
  return groups;
}

}  // namespace triage
