// device_query for builds without the GPU path.
#include "cuda/device_query.h"

#include "common/error.h"

namespace triage {

GpuInfo query_gpus() {
  GpuInfo info;
  info.no_gpu_reason = "built without CUDA (TRIAGE_ENABLE_CUDA=OFF or no nvcc/nccl.h)";
  return info;
}

void select_gpu(int device) {
  TRIAGE_ASSERT(false, "select_gpu(" << device << ") in a build without CUDA");
}

void synchronize_gpu() { TRIAGE_ASSERT(false, "synchronize_gpu() in a build without CUDA"); }

}  // namespace triage
