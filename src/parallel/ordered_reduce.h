// Reduce-scatter and all-gather over a Communicator, built on its row exchange. Each rank
// sums its own chunk from the pieces every rank sent, in rank order, so a sum has the same
// bits whatever the backend, whether the caller blocked or overlapped it, and however the
// library would have chosen its own order (MPI's all-reduce picks an algorithm by message
// size). Together they are an all-reduce with the bandwidth of a ring: each rank sends and
// receives (ranks - 1) / ranks of the data twice.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>

#include "parallel/communicator.h"

namespace triage {

class PendingReduceScatter {
 public:
  // flat: contiguous, 1-D, numel a multiple of comm.size(); its chunk p goes to rank p.
  // wire: the dtype the pieces travel in (flat's own, or bfloat16 for half the bytes); the
  // sum is taken in flat's dtype as the pieces arrive. Collective: every rank starts it.
  PendingReduceScatter(Communicator& comm, const at::Tensor& flat, at::ScalarType wire);
  // Lets the transfer advance (MPI moves large messages only inside its calls); true when
  // it is complete.
  bool progress();
  // Waits, and returns this rank's chunk of the sum over the ranks, in flat's dtype.
  at::Tensor finish();

 private:
  at::Tensor send_, recv_;
  at::ScalarType sum_dtype_;
  int64_t ranks_ = 1, chunk_ = 0;
  std::unique_ptr<PendingRows> pending_;
};

class PendingAllGather {
 public:
  // Rank p's `chunk` lands at chunk p of `out` on every rank; chunks have equal sizes and
  // out.numel() == comm.size() * chunk.numel(). Both stay alive until wait() returns.
  PendingAllGather(Communicator& comm, const at::Tensor& chunk, const at::Tensor& out);
  bool progress();
  void wait();

 private:
  std::unique_ptr<PendingRows> pending_;
};

}  // namespace triage
