// The exit codes of `triage` and of ./launch/run, one table for every path (CPU, MPI, NCCL,
// the watchdogs, preemption). A launcher or scheduler decides from the code alone whether
// a restart can help: bad input and a bad command line never heal; the rest may.
//
//   code      meaning                                             restart?
//   0         done
//   1         bad input: config, data, checkpoint, run folder       no: fix the input
//   2         bad command line                                      no
//   3         internal error (a bug; please report it)              yes, once may pass
//   4         a collective timed out (a peer stalled or is gone)    yes
//   5         device or transport error: a CUDA, NCCL or MPI call   yes (on healthy nodes)
//             failed (a GPU fault, an asynchronous NCCL error)
//   75        preempted: stopped at a step boundary with a          resume with --resume
//             checkpoint, or before the first step (nothing lost)
//   128 + N   killed by signal N (9: SIGKILL, the OOM killer)        yes
#pragma once

namespace triage::exit_code {

constexpr int kDone = 0;
constexpr int kBadInput = 1;
constexpr int kBadCommandLine = 2;
constexpr int kInternalError = 3;
constexpr int kCollectiveTimeout = 4;
constexpr int kDeviceError = 5;
constexpr int kPreempted = 75;  // EX_TEMPFAIL: try again later
constexpr int kKilledBySignalBase = 128;

}  // namespace triage::exit_code
