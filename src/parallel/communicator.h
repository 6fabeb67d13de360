// Collective operations on one group of ranks, behind an interface so that the MoE
// exchange and gradient sync do not know whether MPI (CPU tensors, here) or NCCL (GPU
// tensors, later) moves the bytes. Communicators are passed explicitly, never global.
// Tensors are row-major; "rows" are slices along dimension 0.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace triage {

struct HostLevels;

// Rows [offset, offset + rows) of a tensor.
struct RowSpan {
  int64_t offset = 0;
  int64_t rows = 0;
};

// A row exchange in flight. Its tensors must stay alive and untouched until wait() returns;
// destroying one that was not waited for waits for it.
class PendingRows {
 public:
  virtual ~PendingRows() = default;
  // Lets the transfer advance while the caller computes (MPI moves large messages only
  // inside MPI calls); true once it is complete.
  virtual bool progress() = 0;
  virtual void wait() = 0;
};

class Communicator {
 public:
  Communicator();
  virtual ~Communicator();

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // send[p] goes to rank p; returns what each rank p sent here. send.size() % size() == 0:
  // every rank sends the same number of values to each peer.
  virtual std::vector<int64_t> alltoall(const std::vector<int64_t>& send) = 0;

  // Sends send_rows[p] consecutive rows of `rows` to rank p (in rank order) and returns
  // the rows received, recv_rows[p] from rank p, in rank order. Only real rows travel.
  virtual at::Tensor alltoallv_rows(const at::Tensor& rows, const std::vector<int64_t>& send_rows,
                                    const std::vector<int64_t>& recv_rows) = 0;

  // Starts sending rows send_spans[p] of `send` to rank p while rows from rank p land at
  // recv_spans[p] of `recv`; spans may leave gaps and be empty (rows for this rank that
  // the caller handles in place need not travel). Collective: every rank starts the same
  // sequence of exchanges. Both tensors are contiguous with equal row shapes.
  virtual std::unique_ptr<PendingRows> start_alltoallv_rows(
      const at::Tensor& send, const std::vector<RowSpan>& send_spans, const at::Tensor& recv,
      const std::vector<RowSpan>& recv_spans) = 0;

  virtual void allreduce_sum_(at::Tensor& tensor) = 0;  // in place, over all ranks
  virtual void broadcast_(at::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;

  // The host of each rank of this group, numbered from 0 in order of each host's first rank;
  // ranks share a host when they share memory (MPI_COMM_TYPE_SHARED). Collective.
  virtual std::vector<int> host_of_ranks() = 0;
  // A communicator over the ranks of this group that pass the same color, ordered by key.
  // Collective.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // host_of_ranks(), asked once (collective then, on every rank of the group) and kept.
  const std::vector<int>& hosts();
  // The group's two levels over its hosts (host_levels.h), made on first use (collective
  // then) and kept, so that every layer shares them.
  const HostLevels& host_levels();

 private:
  std::vector<int> hosts_;
  std::unique_ptr<HostLevels> host_levels_;
};

}  // namespace triage
