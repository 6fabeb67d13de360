// Lists visible GPUs through the CUDA runtime. Without a driver the runtime reports
// cudaErrorInsufficientDriver (35) or cudaErrorNoDevice: that is "no GPU", not a failure.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <sstream>

#include "common/check.h"
#include "cuda/device_query.h"

namespace triage {

GpuInfo query_gpus() {
  GpuInfo info;
  info.cuda_built = true;
  TRIAGE_CUDA_CHECK(cudaRuntimeGetVersion(&info.runtime_version));
  if (ncclGetVersion(&info.nccl_version) != ncclSuccess) info.nccl_version = 0;
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaErrorInsufficientDriver || status == cudaErrorNoDevice) {
    info.no_gpu_reason = cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return info;
  }
  TRIAGE_CUDA_CHECK(status);
  for (int device = 0; device < count; ++device) {
    cudaDeviceProp prop{};
    TRIAGE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    std::ostringstream text;
    text << prop.name << " (sm_" << prop.major << prop.minor << ", " << (prop.totalGlobalMem >> 30)
         << " GiB)";
    info.devices.push_back(text.str());
    char bus_id[32] = {};
    TRIAGE_CUDA_CHECK(cudaDeviceGetPCIBusId(bus_id, sizeof bus_id, device));
    info.bus_ids.push_back(bus_id);
  }
  if (count == 0) info.no_gpu_reason = "no CUDA device";
  return info;
}

void select_gpu(int device) { TRIAGE_CUDA_CHECK(cudaSetDevice(device)); }

void synchronize_gpu() { TRIAGE_CUDA_CHECK(cudaDeviceSynchronize()); }

}  // namespace triage
