// The check macros for every library call that can fail: each runs the call and, on
// failure, throws LibraryCallFailed (a std::runtime_error) with the library, the call as written,
// file, line and the library's own error text.
//   TRIAGE_MPI_CHECK(MPI_...)    (the parallel layer installs MPI_ERRORS_RETURN, so that MPI
//                                 failures reach it instead of MPI's default abort)
//   TRIAGE_CUDA_CHECK(cuda...)   CUDA runtime calls
//   TRIAGE_NCCL_CHECK(nccl...)   NCCL calls
// The header includes no library headers (the macros expand where the call is, which has
// them), so torch-free .cu files and MPI-only files share it.
#pragma once

#include <stdexcept>
#include <string>

namespace triage {

// A failed CUDA, NCCL or MPI call: a device or transport fault, not the user's input, so
// the program exits with exit_code::kDeviceError (restartable) rather than as a bug.
class LibraryCallFailed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

[[noreturn]] inline void call_failed(const char* library, const char* call, const char* file,
                                     int line, const std::string& why) {
  throw LibraryCallFailed(std::string(library) + " error: " + call + " at " + file + ":" +
                          std::to_string(line) + ": " + why);
}

}  // namespace detail
}  // namespace triage

#define TRIAGE_MPI_CHECK(call)                                                          \
  do {                                                                                  \
    const int triage_mpi_code_ = (call);                                                \
    if (triage_mpi_code_ != MPI_SUCCESS) {                                              \
      char triage_mpi_text_[MPI_MAX_ERROR_STRING];                                      \
      int triage_mpi_length_ = 0;                                                       \
      if (MPI_Error_string(triage_mpi_code_, triage_mpi_text_, &triage_mpi_length_) !=  \
          MPI_SUCCESS)                                                                  \
        triage_mpi_length_ = 0;                                                         \
      ::triage::detail::call_failed("MPI", #call, __FILE__, __LINE__,                   \
                                    std::string(triage_mpi_text_, triage_mpi_length_)); \
    }                                                                                   \
  } while (0)

#define TRIAGE_CUDA_CHECK(call)                                               \
  do {                                                                        \
    const cudaError_t triage_cuda_status_ = (call);                           \
    if (triage_cuda_status_ != cudaSuccess)                                   \
      ::triage::detail::call_failed("CUDA", #call, __FILE__, __LINE__,        \
                                    cudaGetErrorString(triage_cuda_status_)); \
  } while (0)

#define TRIAGE_NCCL_CHECK(call)                                               \
  do {                                                                        \
    const ncclResult_t triage_nccl_status_ = (call);                          \
    if (triage_nccl_status_ != ncclSuccess)                                   \
      ::triage::detail::call_failed("NCCL", #call, __FILE__, __LINE__,        \
                                    ncclGetErrorString(triage_nccl_status_)); \
  } while (0)
