// Measuring the links between ranks with plain MPI, for calibration and as the baseline the
// exchange is held against: ping-pong and all-to-all over growing messages, fitted to
// latency + bytes / bandwidth; the world split by host to find which link is which; and
// MPI_Alltoallv of float rows, the bare cost of the bytes an exchange moves.
#pragma once

#include <mpi.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <utility>
#include <vector>

#include "bench/scaling_model.h"

namespace triage::bench {

// MPI_Alltoallv of float rows of `width`: send_rows[p] rows to rank p, recv_rows[p] from
// it, in rank order, over MPI_COMM_WORLD.
void raw_alltoallv(const float* send, const std::vector<int64_t>& send_rows, float* recv,
                   const std::vector<int64_t>& recv_rows, int64_t width);

// A link's measured points (bytes, seconds) and the latency + bandwidth fitted to them by
// least squares on relative error, so small and large messages weigh alike.
struct LinkFit {
  model::Link link;
  std::vector<std::pair<double, double>> points;
  nlohmann::ordered_json json() const;
};

// Ping-pong (ranks 0 and 1 of `comm`) and all-to-all by all of `comm`'s ranks, from 8 B up
// to max_bytes, denser around `typical` bytes (what the exchange sends); written into
// record["ping_pong"] and record["all_to_all"]. Every world rank calls it; those outside
// the link pass MPI_COMM_NULL and wait without spinning. Returns the all-to-all fit, the
// model's link.
model::Link measure_link(MPI_Comm comm, int64_t max_bytes, double typical,
                         nlohmann::ordered_json& record);
// The all-to-all part alone, by every rank of `comm`.
LinkFit all_to_all(MPI_Comm comm, int64_t max_bytes, double typical);

// The world as hosts (ranks that share memory), built collectively; frees what it made.
class HostGroups {
 public:
  HostGroups();
  ~HostGroups();
  HostGroups(const HostGroups&) = delete;
  HostGroups& operator=(const HostGroups&) = delete;

  int hosts() const { return hosts_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }         // ranks on this rank's host
  int first_host_ranks() const { return host0_ranks_; }  // ranks on rank 0's host
  int cpus() const { return cpus_; }  // CPUs this host's ranks are given, together
  // One rank per host (each host's local rank 0); MPI_COMM_NULL on the others.
  MPI_Comm leaders() const { return leaders_; }
  // The first `count` ranks of rank 0's host (collective; the caller frees it with
  // MPI_Comm_free); MPI_COMM_NULL on the others.
  MPI_Comm first_host(int count) const;

 private:
  MPI_Comm host_ = MPI_COMM_NULL, leaders_ = MPI_COMM_NULL;
  int hosts_ = 1, local_rank_ = 0, local_size_ = 1, host0_ranks_ = 1, cpus_ = 1;
  bool on_host0_ = false;
};

}  // namespace triage::bench
