// What a training step's world totals say, as the logs print them: the losses over the
// global batch, the drop share, and per MoE layer the experts' loads, the receive bound's
// drops and the busiest rank's intake. Pure arithmetic on numbers every rank holds alike.
#pragma once

#include <cstdint>

#include "train/metrics.h"
#include "train/step_totals.h"

namespace triage {

// What the step's global batch held, counted from its examples (not by the model).
struct StepCounts {
  double targets = 0;   // predicted tokens (the LM loss's divisor)
  double labelled = 0;  // sequences with a label (the classification loss's divisor)
  bool lm = true, classify = false;
  int64_t world = 1;          // ranks: the balance and z-losses are summed over them ...
  int64_t micro_batches = 1;  // ... and over the micro-batches
};

// Fills m's losses, dropped_pct, max_mean_load, tokens_per_expert, bound drops and
// received_max_mean from `totals` (after StepTotals::sum_over).
void fill_step_metrics(const StepTotals& totals, const StepCounts& counts, StepMetrics& m);

}  // namespace triage
