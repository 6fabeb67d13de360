#include "train/step_metrics.h"

#include <algorithm>
#include <numeric>
#include <vector>

namespace triage {

void fill_step_metrics(const StepTotals& totals, const StepCounts& counts, StepMetrics& m) {
  m.lm_loss = counts.lm ? totals.lm_loss_sum / std::max(1.0, counts.targets) : 0.0;
  m.class_loss = counts.classify ? totals.class_loss_sum / std::max(1.0, counts.labelled) : 0.0;
  m.loss = m.lm_loss + m.class_loss;
  const double summed_over = double(counts.world) * double(counts.micro_batches);
  m.balance_loss = totals.balance_loss / summed_over;
  m.z_loss = totals.z_loss / summed_over;
  m.dropped_pct = totals.assignments > 0 ? 100.0 * totals.dropped / totals.assignments : 0.0;
  for (size_t l = 0; l < totals.tokens_per_expert.size(); ++l) {
    const std::vector<double>& load = totals.tokens_per_expert[l];
    std::vector<int64_t> tokens_per_expert(load.size());
    double sum = 0, busiest = 0;
    for (size_t e = 0; e < load.size(); ++e) {
      tokens_per_expert[e] = int64_t(load[e]);
      sum += double(tokens_per_expert[e]);
      busiest = std::max(busiest, double(tokens_per_expert[e]));
    }
    if (sum > 0) m.max_mean_load = std::max(m.max_mean_load, busiest / (sum / double(load.size())));
    m.tokens_per_expert.push_back(std::move(tokens_per_expert));
    std::vector<int64_t> bound(totals.bound_dropped[l].size());
    for (size_t p = 0; p < bound.size(); ++p) {
      bound[p] = int64_t(totals.bound_dropped[l][p]);
      m.bound_dropped += bound[p];
    }
    m.bound_dropped_per_rank.push_back(std::move(bound));
    const std::vector<double>& received = totals.received_rows[l];
    const double received_sum = std::accumulate(received.begin(), received.end(), 0.0);
    if (received_sum > 0)
      m.received_max_mean =
          std::max(m.received_max_mean, *std::max_element(received.begin(), received.end()) /
                                            (received_sum / double(received.size())));
  }
}

}  // namespace triage
