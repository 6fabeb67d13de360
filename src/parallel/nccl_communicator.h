// The NCCL backend of Communicator, for CUDA tensors (train.device: cuda). CPU tensors
// (counts, statistics, checkpoint records) go through an MPI communicator over the same
// ranks, so callers never need to know which backend they hold.
//
// Bootstrap: rank 0 of `comm` makes the NCCL unique id, MPI broadcasts it, every rank
// joins with ncclCommInitRank on its current CUDA device (selected beforehand from the
// node-local rank). Collectives run on a dedicated communication stream, ordered after
// the caller's stream by an event and back again, so independent compute can overlap.
// A watchdog thread ends the whole job when a collective reports an asynchronous NCCL
// error or does not finish within timeout_s (train.collective_timeout_s, like every other
// collective): ncclCommAbort, then MPI_Abort, never a silent hang.
#pragma once

#include <mpi.h>

#include <memory>

#include "parallel/communicator.h"

namespace triage {

// Throws Error in a build without the CUDA path. Collective over `comm`.
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, double timeout_s);

}  // namespace triage
