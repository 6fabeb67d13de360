// What the training loop does after each step, decided from numbers every rank holds
// alike (so every rank takes the collective save and the stop together): whether to
// evaluate, whether to save a checkpoint, and whether the run goes on.
#pragma once

#include <cstdint>

#include "config/config.h"

namespace triage {

// Evaluate after `step` (1-based): every train.eval_every steps and after the last one,
// when anything is held out.
bool evaluates_after(int64_t step, const TrainConfig& train, bool held_out);

enum class RunGoes {
  kOn,
  kFinished,      // the last step is done
  kStoppedEarly,  // train.early_stop_patience evaluations without improving
  kStopped,       // --stop-after reached
  kPreempted,     // a rank was asked to stop (SIGTERM / SIGUSR1)
};

struct AfterStep {
  bool save = false;  // a checkpoint of this step (once, whatever asks for it)
  RunGoes goes = RunGoes::kOn;
};

// improved: this step's evaluation set a new best; stop_early: it was the last the
// patience allows; stop_after: --stop-after (0: none); preempted: any rank's signal.
AfterStep after_step(int64_t step, const TrainConfig& train, int64_t stop_after, bool improved,
                     bool stop_early, bool preempted);

}  // namespace triage
