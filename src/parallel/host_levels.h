// A group of ranks seen as hosts (moe.exchange hierarchical): the ranks on one host form the
// inner level, and the ranks with the same place on every host (one per host) the outer.
// A row bound for another host crosses the network on the outer level, between peers of
// the same place, and fans out on the inner level over shared memory.
// Example: 4 ranks on 2 hosts {0,1} {2,3}: on_host {0,1} or {2,3}; across_hosts {0,2} or
// {1,3}; rank 3 is host 1, place 1.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace triage {

struct HostLevels {
  int hosts = 1, ranks_per_host = 1;
  std::vector<int> host_of_rank;               // per rank of the group
  std::vector<int> place_of_rank;              // per rank: its position among its host's ranks
  std::vector<int> rank_at;                    // group rank at [host * ranks_per_host + place]
  std::unique_ptr<Communicator> on_host;       // this rank's host's ranks, by place
  std::unique_ptr<Communicator> across_hosts;  // the ranks of this rank's place, by host
};

// Why the hosts cannot form two levels (they hold different numbers of the group's ranks),
// naming the counts; empty when they can.
std::string uneven_hosts(const std::vector<int>& host_of_rank);

// The levels of `group` when rank r is on host_of_rank[r]. Collective over the group.
// Throws Error when uneven_hosts says why not.
std::unique_ptr<HostLevels> make_host_levels(Communicator& group,
                                             const std::vector<int>& host_of_rank);

}  // namespace triage
