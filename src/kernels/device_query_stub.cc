// device_query for builds without the GPU path.
#include "kernels/device_query.h"

namespace triage {

GpuInfo query_gpus() {
  GpuInfo info;
  info.no_gpu_reason = "built without CUDA (TRIAGE_ENABLE_CUDA=OFF or no nvcc/nccl.h)";
  return info;
}

}  // namespace triage
