// TRIAGE_CUDA_CHECK(call): runs a CUDA runtime call and throws with call, file and line
// on failure. Torch-free so .cu files stay fast to compile.
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

#define TRIAGE_CUDA_CHECK(call)                                                                \
  do {                                                                                         \
    cudaError_t triage_cuda_status_ = (call);                                                  \
    if (triage_cuda_status_ != cudaSuccess)                                                    \
      throw std::runtime_error(std::string("CUDA error: ") + #call + " at " + __FILE__ + ":" + \
                               std::to_string(__LINE__) + ": " +                               \
                               cudaGetErrorString(triage_cuda_status_));                       \
  } while (0)
