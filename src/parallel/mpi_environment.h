// The MPI process environment: initialises MPI once per process, makes MPI report errors
// to TRIAGE_MPI_CHECK instead of aborting silently, and ends the whole job when one rank
// fails, so no rank is ever left waiting in a collective.
#pragma once

#include <string>

namespace triage {

class MpiEnvironment {
 public:
  MpiEnvironment(int* argc, char*** argv);
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }

 private:
  int world_rank_ = 0;
  int world_size_ = 1;
};

// Prints "[rank R] message" to stderr and aborts every rank of the job with `exit_code`:
// MPI_Abort from the thread that started MPI; from any other thread (MPI is FUNNELED) this
// process exits at once and mpirun ends the others.
[[noreturn]] void abort_job(const std::string& message, int exit_code);

// True between MPI start-up and shutdown in a job of more than one rank: then an error on
// this rank must abort the job, or the others would wait for it in their next collective.
bool in_multi_rank_job();

// The MPI library's name and version, e.g. "Open MPI v4.1.4" (the first line of
// MPI_Get_library_version, up to its first comma).
std::string mpi_library_version();

}  // namespace triage
