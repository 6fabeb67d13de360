// Preemption: SIGTERM or SIGUSR1 (what Slurm's --signal and a cluster's scheduler send
// before they kill a job) asks the run to stop at the next step boundary. The ranks agree
// on that boundary in the step's statistics all-reduce (a rank that saw the signal votes
// to stop), save a checkpoint and exit with exit_code::kPreempted, which ./launch/run reports.
#pragma once

namespace triage::preemption {

void install_handlers();
// The signal number received since install_handlers(), or 0.
int requested();

}  // namespace triage::preemption
