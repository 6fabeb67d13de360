// The training loop of `triage train`: data -> model -> loss -> backward -> gradient sync
// -> clip -> AdamW, with held-out evaluation, progress lines, metrics and checkpoints.
//
// Every rank runs this; rank r trains on its contiguous slice of each global batch. The
// objective on rank r is scaled so that the world's mean over ranks (what GradientSync
// forms) is the loss of the whole global batch: the one-process run with every expert
// local is the reference any layout must reproduce.
#pragma once

#include <cstdint>
#include <string>

#include "config/config.h"
#include "parallel/process_groups.h"

namespace triage {

struct TrainOptions {
  std::string out_dir = "runs/latest";  // metrics.jsonl, summary.json, checkpoints/
  bool resume = false;                  // continue from out_dir/checkpoints/latest
  int64_t stop_after = 0;               // > 0: stop (with a checkpoint) after this step
  bool overwrite = false;               // a fresh run may replace an earlier run in out_dir
  // Makes the communicators of train.device = cuda (the executable passes NCCL's), so that
  // the trainer, like the layer, never names a backend.
  CommunicatorFactory gpu_communicator = nullptr;
};

enum class TrainResult {
  kFinished,   // train.steps done
  kStopped,    // --stop-after reached, checkpoint saved
  kPreempted,  // SIGTERM / SIGUSR1: checkpoint saved at the agreed step boundary
};

// Collective over MPI_COMM_WORLD. Errors every rank finds (bad data, layout, run folder,
// checkpoint) are reported once and thrown as ReportedFailure; others throw Error.
TrainResult train(const Config& config, const TrainOptions& options);

}  // namespace triage
