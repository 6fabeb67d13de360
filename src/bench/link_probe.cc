// Link measurements with plain MPI; see the header.
#include "bench/link_probe.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "bench/timing.h"
#include "common/check.h"
#include "parallel/cpu_budget.h"

namespace triage::bench {
namespace {

// 8 B to max_bytes by factors of 8, plus half, once and twice `typical` (the exchange's
// message), where the fit takes its bandwidth.
std::vector<int64_t> message_sizes(int64_t max_bytes, int64_t typical) {
  std::set<int64_t> sizes;
  for (int64_t b = 8; b <= max_bytes; b *= 8) sizes.insert(b);
  sizes.insert(max_bytes);
  for (int64_t b : {typical / 2, typical, typical * 2})
    if (b >= 8 && b <= max_bytes) sizes.insert(b);
  return {sizes.begin(), sizes.end()};
}

// A barrier that sleeps instead of spinning: ranks that sit out a link test must leave
// the cores to the ranks measuring (spinning ones cost them a scheduler tick per message).
void quiet_barrier(MPI_Comm comm) {
  MPI_Request request;
  TRIAGE_MPI_CHECK(MPI_Ibarrier(comm, &request));
  for (int done = 0; !done;) {
    TRIAGE_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (!done) std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
}

int reps_for(int64_t bytes) {
  return int(std::clamp<int64_t>((int64_t(1) << 26) / std::max<int64_t>(bytes, 1), 3, 50));
}

// Half the round trip between ranks a and b of comm (others idle); median over reps.
LinkFit ping_pong(MPI_Comm comm, int a, int b, int64_t max_bytes, double typical_bytes) {
  int me = 0;
  TRIAGE_MPI_CHECK(MPI_Comm_rank(comm, &me));
  LinkFit fit;
  for (int64_t bytes : message_sizes(max_bytes, int64_t(typical_bytes))) {
    std::vector<char> buffer(static_cast<size_t>(bytes));
    std::vector<double> times;
    const int reps = reps_for(bytes);
    for (int rep = 0; rep < reps; ++rep) {
      TRIAGE_MPI_CHECK(MPI_Barrier(comm));
      const double start = now_seconds();
      if (me == a) {
        TRIAGE_MPI_CHECK(MPI_Send(buffer.data(), int(bytes), MPI_CHAR, b, 0, comm));
        TRIAGE_MPI_CHECK(
            MPI_Recv(buffer.data(), int(bytes), MPI_CHAR, b, 0, comm, MPI_STATUS_IGNORE));
      } else if (me == b) {
        TRIAGE_MPI_CHECK(
            MPI_Recv(buffer.data(), int(bytes), MPI_CHAR, a, 0, comm, MPI_STATUS_IGNORE));
        TRIAGE_MPI_CHECK(MPI_Send(buffer.data(), int(bytes), MPI_CHAR, a, 0, comm));
      }
      times.push_back((now_seconds() - start) / 2.0);
    }
    double t = median(times);
    TRIAGE_MPI_CHECK(MPI_Bcast(&t, 1, MPI_DOUBLE, a, comm));
    fit.points.emplace_back(double(bytes), t);
  }
  fit.link = model::fit_link(fit.points, typical_bytes);
  return fit;
}

}  // namespace

void raw_alltoallv(const float* send, const std::vector<int64_t>& send_rows, float* recv,
                   const std::vector<int64_t>& recv_rows, int64_t width) {
  const size_t ranks = send_rows.size();
  std::vector<int> send_counts(ranks), send_offsets(ranks), recv_counts(ranks), recv_offsets(ranks);
  int64_t send_at = 0, recv_at = 0;
  for (size_t p = 0; p < ranks; ++p) {
    send_counts[p] = int(send_rows[p] * width);
    send_offsets[p] = int(send_at);
    recv_counts[p] = int(recv_rows[p] * width);
    recv_offsets[p] = int(recv_at);
    send_at += send_counts[p];
    recv_at += recv_counts[p];
  }
  TRIAGE_MPI_CHECK(MPI_Alltoallv(send, send_counts.data(), send_offsets.data(), MPI_FLOAT, recv,
                                 recv_counts.data(), recv_offsets.data(), MPI_FLOAT,
                                 MPI_COMM_WORLD));
}

// MPI_Alltoall with `bytes` per peer, back to back (pausing first was tried: on a tc tbf
// link it made TCP slower, not faster); a point is (bytes each rank sends to others, the
// slowest rank's time), the quantity the model's row exchange charges.
LinkFit all_to_all(MPI_Comm comm, int64_t max_bytes, double typical_bytes) {
  int size = 0;
  TRIAGE_MPI_CHECK(MPI_Comm_size(comm, &size));
  LinkFit fit;
  for (int64_t bytes :
       message_sizes(std::max<int64_t>(8, max_bytes / size), int64_t(typical_bytes) / size)) {
    std::vector<char> send(size_t(bytes * size)), receive(size_t(bytes * size));
    std::vector<double> times;
    const int reps = reps_for(bytes * size);
    for (int rep = 0; rep < reps; ++rep) {
      TRIAGE_MPI_CHECK(MPI_Barrier(comm));
      const double start = now_seconds();
      TRIAGE_MPI_CHECK(MPI_Alltoall(send.data(), int(bytes), MPI_CHAR, receive.data(), int(bytes),
                                    MPI_CHAR, comm));
      double t = now_seconds() - start;
      TRIAGE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm));
      times.push_back(t);
    }
    fit.points.emplace_back(double(bytes * (size - 1)), median(times));
  }
  fit.link = model::fit_link(fit.points, typical_bytes);
  return fit;
}

nlohmann::ordered_json LinkFit::json() const {
  return {{"latency_s", link.latency_s}, {"bandwidth_Bps", link.bandwidth_Bps}, {"points", points}};
}

model::Link measure_link(MPI_Comm comm, int64_t max_bytes, double typical,
                         nlohmann::ordered_json& record) {
  LinkFit pp, a2a;
  if (comm != MPI_COMM_NULL) {
    pp = ping_pong(comm, 0, 1, max_bytes, typical);
    a2a = all_to_all(comm, max_bytes, typical);
  }
  quiet_barrier(MPI_COMM_WORLD);
  record["ping_pong"] = pp.json();
  record["all_to_all"] = a2a.json();
  return a2a.link;
}

HostGroups::HostGroups() {
  int rank = 0;
  TRIAGE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  TRIAGE_MPI_CHECK(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &host_));
  TRIAGE_MPI_CHECK(MPI_Comm_rank(host_, &local_rank_));
  TRIAGE_MPI_CHECK(MPI_Comm_size(host_, &local_size_));
  TRIAGE_MPI_CHECK(
      MPI_Comm_split(MPI_COMM_WORLD, local_rank_ == 0 ? 0 : MPI_UNDEFINED, rank, &leaders_));
  // Rank 0's figures, for every rank: the leaders' count is the hosts'.
  int figures[2] = {0, local_size_};
  if (rank == 0) TRIAGE_MPI_CHECK(MPI_Comm_size(leaders_, &figures[0]));
  TRIAGE_MPI_CHECK(MPI_Bcast(figures, 2, MPI_INT, 0, MPI_COMM_WORLD));
  hosts_ = figures[0];
  host0_ranks_ = figures[1];
  // Rank 0's host is the one whose host communicator holds world rank 0.
  int holds_rank0 = rank == 0 ? 1 : 0;
  TRIAGE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &holds_rank0, 1, MPI_INT, MPI_MAX, host_));
  on_host0_ = holds_rank0 != 0;
  cpu_set_t mask = affinity_mask();
  std::vector<cpu_set_t> masks(static_cast<size_t>(local_size_));
  TRIAGE_MPI_CHECK(MPI_Allgather(&mask, int(sizeof(cpu_set_t)), MPI_BYTE, masks.data(),
                                 int(sizeof(cpu_set_t)), MPI_BYTE, host_));
  cpus_ = host_cpus(masks, cgroup_cpu_quota());
}

HostGroups::~HostGroups() {
  // No check: a destructor must not throw, and MPI may already be failing on this path.
  if (leaders_ != MPI_COMM_NULL) MPI_Comm_free(&leaders_);
  if (host_ != MPI_COMM_NULL) MPI_Comm_free(&host_);
}

MPI_Comm HostGroups::first_host(int count) const {
  int rank = 0;
  TRIAGE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  MPI_Comm comm = MPI_COMM_NULL;
  TRIAGE_MPI_CHECK(MPI_Comm_split(
      MPI_COMM_WORLD, on_host0_ && local_rank_ < count ? 0 : MPI_UNDEFINED, rank, &comm));
  return comm;
}

}  // namespace triage::bench
