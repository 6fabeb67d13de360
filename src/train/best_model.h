// train.keep_best and train.early_stop_patience: which held-out evaluation was the best so
// far, and when to stop because none has improved on it for a while. Every rank sees the
// same (all-reduced) evaluations, so every rank decides alike.
#pragma once

#include <cstdint>
#include <optional>

#include "config/choices.h"
#include "train/metrics.h"

namespace triage {

// The figure `metric` watches in an evaluation; lower is better.
double watched_value(KeepBest metric, const EvalMetrics& eval);

class BestModel {
 public:
  BestModel(KeepBest metric, int64_t patience) : metric_(metric), patience_(patience) {}

  // A resumed run starts from the best its earlier part recorded.
  void restore(int64_t step, double value);

  // Records an evaluation; true when it improves (strictly) on the best so far.
  bool record(const EvalMetrics& eval);

  // patience > 0 and that many evaluations in a row have not improved.
  bool should_stop() const { return patience_ > 0 && evaluations_without_gain_ >= patience_; }

  bool enabled() const { return metric_ != KeepBest::kNone; }
  KeepBest metric() const { return metric_; }
  std::optional<int64_t> best_step() const { return best_step_; }
  double best_value() const { return best_value_; }
  int64_t evaluations_without_gain() const { return evaluations_without_gain_; }

 private:
  KeepBest metric_;
  int64_t patience_;
  std::optional<int64_t> best_step_;
  double best_value_ = 0;
  int64_t evaluations_without_gain_ = 0;
};

}  // namespace triage
