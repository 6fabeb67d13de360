// One MPI_Allreduce of a flag per rank; see the header.
#include "parallel/agreement.h"

#include <mpi.h>
#include <iostream>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/error.h"
#include "parallel/watchdog.h"

namespace triage {

void agree(const std::function<void()>& work, MPI_Comm comm) {
  std::string message;
  try {
    work();
  } catch (const Error& e) {
    message = e.what();
  }
  int rank = 0, size = 1;
  TRIAGE_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  TRIAGE_MPI_CHECK(MPI_Comm_size(comm, &size));
  std::vector<int> failed(size, 0);
  failed[rank] = message.empty() ? 0 : 1;
  {
    watchdog::InCollective in_flight("all-reduce of error flags");
    TRIAGE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, failed.data(), size, MPI_INT, MPI_SUM, comm));
  }
  int failing = 0, first = -1;
  for (int r = 0; r < size; ++r)
    if (failed[r]) failing++, first = first < 0 ? r : first;
  if (failing == 0) return;
  if (rank == first) {
    const std::string prefix = failing < size ? "[rank " + std::to_string(rank) + "] " : "";
    std::cerr << prefix << "error: " << message << std::endl;
  }
  throw ReportedFailure();
}

}  // namespace triage
