// The step's totals, packed for one all-reduce; see the header.
#include "train/step_totals.h"

#include <ATen/ATen.h>

#include "common/error.h"

namespace triage {

StepTotals::StepTotals(int64_t moe_layers, int64_t experts, int64_t ep_size, int world_rank,
                       int world_size)
    : tokens_per_expert(size_t(moe_layers), std::vector<double>(size_t(experts), 0.0)),
      bound_dropped(size_t(moe_layers), std::vector<double>(size_t(ep_size), 0.0)),
      received_rows(size_t(moe_layers), std::vector<double>(size_t(world_size), 0.0)),
      world_rank_(world_rank) {}

void StepTotals::add(const std::vector<MoeStats>& stats) {
  TRIAGE_ASSERT(stats.size() == tokens_per_expert.size(),
                stats.size() << " MoE layers' statistics for " << tokens_per_expert.size());
  for (size_t l = 0; l < stats.size(); ++l) {
    dropped += double(stats[l].dropped);
    assignments += double(stats[l].assignments);
    for (size_t e = 0; e < tokens_per_expert[l].size(); ++e)
      tokens_per_expert[l][e] += double(stats[l].tokens_per_expert[e]);
    for (size_t p = 0; p < bound_dropped[l].size(); ++p)
      bound_dropped[l][p] += double(stats[l].bound_dropped_per_rank[p]);
    received_rows[l][size_t(world_rank_)] += double(stats[l].received_rows);
  }
}

void StepTotals::sum_over(Communicator& world) {
  // Every field in declaration order, as one vector.
  std::vector<double*> fields = {&lm_loss_sum, &class_loss_sum, &balance_loss,
                                 &z_loss,      &dropped,        &assignments};
  for (auto* table : {&tokens_per_expert, &bound_dropped, &received_rows})
    for (std::vector<double>& row : *table)
      for (double& value : row) fields.push_back(&value);
  fields.push_back(&preemption_votes);
  std::vector<double> packed;
  for (const double* field : fields) packed.push_back(*field);
  at::Tensor sums = at::tensor(packed, at::kDouble);
  world.allreduce_sum_(sums);
  const double* summed = sums.data_ptr<double>();
  for (size_t i = 0; i < fields.size(); ++i) *fields[i] = summed[i];
}

}  // namespace triage
