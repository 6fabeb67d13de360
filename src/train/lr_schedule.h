// The learning rate of optimizer step `step` (0-based): linear warmup from peak/warmup to
// the peak over `warmup` steps, then a half cosine from the peak down to peak * min_ratio
// at the last step (as in Megatron-LM's WarmupCosine and GPT-3).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace triage {

inline double learning_rate(int64_t step, int64_t steps, int64_t warmup, double peak,
                            double min_ratio) {
  if (step < warmup) return peak * double(step + 1) / double(warmup);
  const int64_t decay_steps = std::max<int64_t>(1, steps - 1 - warmup);
  const double progress = std::min(1.0, double(step - warmup) / double(decay_steps));
  const double floor = peak * min_ratio;
  return floor + 0.5 * (peak - floor) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace triage
