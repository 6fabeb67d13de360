// TRIAGE_MPI_CHECK(call): runs an MPI call and throws with the call, file, line and MPI's
// own error text when it fails. (MPI's default handler aborts instead; the parallel layer
// installs MPI_ERRORS_RETURN so that failures reach this macro.)
#pragma once

#include <mpi.h>

#include <stdexcept>
#include <string>

namespace triage::detail {
[[noreturn]] inline void mpi_failed(int code, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  throw std::runtime_error(std::string("MPI error: ") + call + " at " + file + ":" +
                           std::to_string(line) + ": " + std::string(text, length));
}
}  // namespace triage::detail

#define TRIAGE_MPI_CHECK(call)                                                   \
  do {                                                                           \
    int triage_mpi_code_ = (call);                                               \
    if (triage_mpi_code_ != MPI_SUCCESS)                                         \
      ::triage::detail::mpi_failed(triage_mpi_code_, #call, __FILE__, __LINE__); \
  } while (0)
