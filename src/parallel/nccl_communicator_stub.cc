// make_nccl_communicator for builds without the CUDA path.
#include "common/error.h"
#include "parallel/nccl_communicator.h"

namespace triage {

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm, double) {
  throw Error(
      "train.device = cuda: this build has no CUDA path (no nvcc or nccl.h at configure time); "
      "expected cpu, or rebuild where the CUDA toolkit with NCCL is installed");
}

}  // namespace triage
