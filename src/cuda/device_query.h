// Which GPUs this process can see. Plain C++ interface; compiled by nvcc only when the
// GPU path is built, otherwise device_query_stub.cc answers "no CUDA in this build".
#pragma once

#include <string>
#include <vector>

namespace triage {

struct GpuInfo {
  bool cuda_built = false;           // this binary has the CUDA path
  int runtime_version = 0;           // CUDA runtime, e.g. 13000
  int nccl_version = 0;              // e.g. 22803 for 2.28.3
  std::string no_gpu_reason;         // why devices is empty, when it is
  std::vector<std::string> devices;  // "NAME (sm_XY, N GiB)"
  std::vector<std::string> bus_ids;  // PCI bus id of each, "0000:3b:00.0": who is who
};

GpuInfo query_gpus();

// Makes `device` this process's current CUDA device (cudaSetDevice).
void select_gpu(int device);

// Waits for all work queued on the current CUDA device (cudaDeviceSynchronize), so that a
// timer reads work done, not work launched.
void synchronize_gpu();

}  // namespace triage
