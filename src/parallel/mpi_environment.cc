// MPI start-up and job-wide failure handling.
#include "parallel/mpi_environment.h"

#include <mpi.h>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <thread>

#include "common/check.h"
#include "common/exit_codes.h"

namespace triage {

namespace {
// Under MPI_THREAD_FUNNELED only the thread that started MPI may call it, so abort_job
// remembers that thread and this rank's number for the others (watchdog threads).
std::thread::id g_mpi_thread;
std::atomic<int> g_world_rank{-1};
}  // namespace

MpiEnvironment::MpiEnvironment(int* argc, char*** argv) {
  g_mpi_thread = std::this_thread::get_id();
  int provided = 0;
  // FUNNELED: only the main thread calls MPI; LibTorch's worker threads never do.
  TRIAGE_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  TRIAGE_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  TRIAGE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_));
  TRIAGE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size_));
  g_world_rank = world_rank_;
  // An exception escaping any thread ends the whole job, not just this rank.
  std::set_terminate(
      [] { abort_job("terminated by an uncaught exception", exit_code::kInternalError); });
}

MpiEnvironment::~MpiEnvironment() {
  // Unwinding from an error: MPI_Finalize would wait for ranks that are waiting for us.
  // Leave MPI up so the handler that catches the error can abort the whole job.
  if (std::uncaught_exceptions() > 0) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

bool in_multi_rank_job() {
  int initialized = 0, finalized = 0, size = 1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return false;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size > 1;
}

void abort_job(const std::string& message, int exit_code) {
  if (g_world_rank >= 0 && std::this_thread::get_id() != g_mpi_thread) {
    // Off the MPI thread no MPI call is legal: end this process; mpirun, seeing a rank
    // die, ends every other rank of the job.
    std::cerr << "[rank " << g_world_rank << "] " << message << std::endl;
    _exit(exit_code);
  }
  int initialized = 0, finalized = 0, rank = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  const bool mpi_up = initialized && !finalized;
  if (mpi_up) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::cerr << "[rank " << rank << "] " << message << std::endl;
  if (mpi_up) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::exit(exit_code);
}

std::string mpi_library_version() {
  char library[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  TRIAGE_MPI_CHECK(MPI_Get_library_version(library, &length));
  const std::string text(library, size_t(length));
  return text.substr(0, text.find_first_of(",\n"));
}

}  // namespace triage
