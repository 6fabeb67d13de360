// The MPI backend of Communicator, for CPU tensors. Only code that builds process groups
// needs this header; everything else sees the MPI-free Communicator interface.
#pragma once

#include <mpi.h>

#include <memory>

#include "parallel/communicator.h"

namespace triage {

// A communicator over `comm` (duplicated, so its traffic cannot mix with anyone else's).
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm);

}  // namespace triage
