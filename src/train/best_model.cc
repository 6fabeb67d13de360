#include "train/best_model.h"

namespace triage {

double watched_value(KeepBest metric, const EvalMetrics& eval) {
  return metric == KeepBest::kEvalLmLoss ? eval.lm_loss : eval.lm_loss + eval.class_loss;
}

void BestModel::restore(int64_t step, double value) {
  best_step_ = step;
  best_value_ = value;
  evaluations_without_gain_ = 0;
}

bool BestModel::record(const EvalMetrics& eval) {
  if (!enabled()) return false;
  const double value = watched_value(metric_, eval);
  if (!best_step_ || value < best_value_) {
    restore(eval.step, value);
    return true;
  }
  ++evaluations_without_gain_;
  return false;
}

}  // namespace triage
