// What a training step holds in memory on one rank, by arithmetic from the config and the
// layout: parameters, their gradients and the gradient sync's bucket copies, AdamW's
// moments (sharded or not), the activations backward keeps (at the configured micro-batch
// and train.recompute), the exchange's receive buffers among them, and the runtime itself
// (libraries, CUDA context). `triage bench model` reports it and `triage config --ranks`
// prints it. Activations count the tensors autograd saves in this code base's blocks,
// listed per block in memory_model.cc; temporaries that live within one operation are not
// counted.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/bytes_text.h"
#include "config/config.h"

namespace triage {

struct MemoryLayout {
  int64_t ranks = 1;            // the world
  int64_t expert = 1;           // EP group size
  double runtime = 0;           // bytes the process holds before any tensor (stated)
  int64_t tokens_per_rank = 0;  // per micro-batch; 0: batch_size / ranks x seq_len
};

// The runtime to state when nothing else is known: LibTorch, Open MPI and the trainer's
// threads on a CPU (384 MiB: the tiny preset's whole peak here is 378 MiB), or those plus a
// CUDA context, NCCL and cuBLAS workspaces on a GPU (2 GiB, stated, not measured here).
double default_runtime_bytes(const Config& config);

struct MemoryEstimate {
  double parameters = 0, gradients = 0, sync_buffers = 0, optimizer = 0, activations = 0,
         receive_buffers = 0,  // of the activations: the rows the exchange receives
      optimizer_step = 0,      // the AdamW step's temporaries at their largest
      runtime = 0;
  double total() const {
    return parameters + gradients + sync_buffers + optimizer + activations + optimizer_step +
           runtime;
  }
  double replicated_parameters = 0, expert_parameters = 0;  // elements on this rank
  int64_t tokens_per_rank = 0;                              // per micro-batch
};

MemoryEstimate estimate_memory(const Config& config, const MemoryLayout& layout);

// The estimate as table rows ("parameters", "1.2 GiB", ...) ending in the total and, when
// device_bytes > 0, whether it fits.
std::vector<std::pair<std::string, std::string>> memory_rows(const MemoryEstimate& m,
                                                             double device_bytes);

}  // namespace triage
