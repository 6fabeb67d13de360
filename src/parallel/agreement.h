// Errors every rank finds, reported once. Work that involves no collective (loading the
// config, checking the run folder, reading data, verifying a checkpoint) runs inside
// agree(); afterwards the ranks exchange one flag each. If any rank failed, the lowest
// failing rank prints its message (prefixed "[rank R]" only when some ranks did not
// fail), and every rank throws ReportedFailure, which the command turns into exit code 1
// after a clean MPI shutdown: one line instead of one per rank plus an abort banner.
#pragma once

#include <mpi.h>

#include <functional>
#include <stdexcept>

namespace triage {

// Thrown on every rank once agree() has reported an error; carries nothing to print.
class ReportedFailure : public std::runtime_error {
 public:
  ReportedFailure() : std::runtime_error("reported") {}
};

// Runs `work` (which must issue no collective on `comm`), then agrees over `comm`.
void agree(const std::function<void()>& work, MPI_Comm comm = MPI_COMM_WORLD);

}  // namespace triage
