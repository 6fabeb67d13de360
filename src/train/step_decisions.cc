#include "train/step_decisions.h"

namespace triage {

bool evaluates_after(int64_t step, const TrainConfig& train, bool held_out) {
  const bool last = step == train.steps;
  return held_out && ((train.eval_every > 0 && step % train.eval_every == 0) || last);
}

AfterStep after_step(int64_t step, const TrainConfig& train, int64_t stop_after, bool improved,
                     bool stop_early, bool preempted) {
  const bool last = step == train.steps;
  const bool stopping = stop_after > 0 && step == stop_after;
  const bool periodic = train.checkpoint_every > 0 && step % train.checkpoint_every == 0;
  AfterStep next;
  // The last step finishes the run whatever else asks; otherwise the first reason to stop,
  // in this order, ends it.
  if (last)
    next.goes = RunGoes::kFinished;
  else if (stop_early)
    next.goes = RunGoes::kStoppedEarly;
  else if (stopping)
    next.goes = RunGoes::kStopped;
  else if (preempted)
    next.goes = RunGoes::kPreempted;
  next.save = last || stopping || periodic || improved || stop_early || preempted;
  return next;
}

}  // namespace triage
