// `triage info`: what this build contains and what hardware it sees, so a user can tell
// at a glance whether the GPU path is compiled in and usable here.
#include <ATen/Parallel.h>

#include <mpi.h>
#include <iostream>

#include "apps/commands.h"
#include "common/check.h"
#include "cuda/device_query.h"
#include "parallel/mpi_environment.h"

namespace triage {

Command add_info_command(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("info", "Show the build's features and visible devices");
  return {sub, [] {
            GpuInfo gpus = query_gpus();
            const std::string mpi = mpi_library_version();
            std::cout << "triage " << TRIAGE_VERSION << "\n"
                      << "LibTorch      " << TRIAGE_TORCH_VERSION << " (" << at::get_num_threads()
                      << " intra-op threads)\n"
                      << "MPI           " << mpi << "\n"
                      << "CUDA path     " << (gpus.cuda_built ? "built" : "not built");
            if (gpus.cuda_built) std::cout << " (runtime " << gpus.runtime_version << ")";
            std::cout << "\nGPUs          ";
            if (gpus.devices.empty()) std::cout << "none: " << gpus.no_gpu_reason;
            for (size_t i = 0; i < gpus.devices.size(); ++i)
              std::cout << (i ? ", " : "") << i << ": " << gpus.devices[i];
            std::cout << "\n";
            return 0;
          }};
}

}  // namespace triage
