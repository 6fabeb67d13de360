// Fault injection for tests, set by the environment variable TRIAGE_FAULT (a testing tool,
// not a feature): make one rank misbehave at a chosen step so that tests can prove the job
// still ends promptly with a clear message and loses no checkpoint.
//   TRIAGE_FAULT=stall:rank=R:step=S               rank R stops (sleeps) when step S starts
//   TRIAGE_FAULT=exit:rank=R:step=S                rank R exits (code 9, no clean-up) then
//   TRIAGE_FAULT=exit_in_checkpoint:rank=R:step=S  rank R exits after writing its first
//                                                  file of the checkpoint of step S
//   TRIAGE_FAULT=stall_in_startup:rank=R:step=0    rank R stops (sleeps) while start-up
//                                                  loads the data, as on a stale mount
#pragma once

#include <cstdint>

namespace triage::fault {

enum class Point { kStartup, kStepStart, kCheckpointFileWritten };

constexpr int kInjectedExitCode = 9;

// Does what TRIAGE_FAULT asks if it names this rank, step and point; otherwise nothing.
// Throws Error on a malformed TRIAGE_FAULT.
void inject(Point point, int rank, int64_t step);

}  // namespace triage::fault
