// Held-out evaluation; see the header.
#include "train/evaluation.h"

#include <c10/core/GradMode.h>

#include <string>

#include "parallel/watchdog.h"
#include "train/objective.h"
#include "train/specialisation.h"

namespace triage {
namespace {

// The summed tensor's layout: five totals, then [MoE layer][label][expert] counts.
enum Total : int64_t { kLmSum, kLmTargets, kClassSum, kLabelled, kCorrect, kTables };

}  // namespace

EvalMetrics evaluate(const std::function<Batch(Batch)>& to_device,
                     const std::function<ModelOutput(const Batch&)>& forward,
                     const EvalSetup& setup, const Config& config, const GroupLayout& g,
                     Communicator& world, int64_t step) {
  c10::NoGradGuard no_grad;
  watchdog::Scope scope("evaluation after step " + std::to_string(step));
  const int64_t batch = config.train.batch_size, slice = batch / g.world_size;
  const int64_t n = int64_t(setup.test->size()), labels = setup.labels;
  const int64_t experts = config.moe.num_experts, layers = setup.moe_layers;
  at::Tensor sums = at::zeros({kTables + layers * labels * experts}, at::kDouble);
  for (int64_t first = 0; first < n; first += batch) {
    std::vector<int64_t> mine;  // the tail batch is padded with empty rows
    for (int64_t j = g.world_rank * slice; j < (g.world_rank + 1) * slice; ++j)
      mine.push_back(first + j < n ? first + j : -1);
    const Batch b = to_device(make_batch(*setup.test, mine, config.data.seq_len));
    ModelOutput out = forward(b);
    if (setup.lm) {
      sums[kLmSum] +=
          token_cross_entropy_sum(out.lm_logits_BLV, b.targets_BL, b.target_BL).item<double>();
      sums[kLmTargets] += b.target_BL.sum().item<double>();
    }
    if (setup.classify) {
      sums[kClassSum] += sequence_cross_entropy_sum(out.class_logits_BC, b.labels_B).item<double>();
      sums[kCorrect] += double(correct_predictions(out.class_logits_BC, b.labels_B));
    }
    sums[kLabelled] += (b.labels_B >= 0).sum().item<double>();
    if (labels == 0) continue;
    at::Tensor label_BL = b.labels_B.unsqueeze(1).expand_as(b.tokens_BL);
    at::Tensor counted = (b.real_BL > 0) & (label_BL >= 0);
    for (int64_t l = 0; l < layers; ++l) {
      at::Tensor cell = (label_BL * experts + out.top_expert_BL[size_t(l)]).masked_select(counted);
      sums.narrow(0, kTables + l * labels * experts, labels * experts)
          .add_(at::bincount(cell, {}, labels * experts).to(at::kCPU, at::kDouble));
    }
  }
  world.allreduce_sum_(sums);
  auto s = sums.accessor<double, 1>();
  EvalMetrics m;
  m.step = step;
  m.sequences = n;
  m.lm_loss = s[kLmTargets] > 0 ? s[kLmSum] / s[kLmTargets] : 0.0;
  m.class_loss = setup.classify && s[kLabelled] > 0 ? s[kClassSum] / s[kLabelled] : 0.0;
  m.accuracy = setup.classify && s[kLabelled] > 0 ? s[kCorrect] / s[kLabelled] : 0.0;
  for (int64_t l = 0; l < layers && labels > 0; ++l) {
    ContingencyTable table(static_cast<size_t>(labels),
                           std::vector<int64_t>(static_cast<size_t>(experts)));
    for (int64_t i = 0; i < labels; ++i)
      for (int64_t e = 0; e < experts; ++e)
        table[size_t(i)][size_t(e)] = int64_t(s[kTables + (l * labels + i) * experts + e]);
    m.nmi.push_back(normalized_mutual_information(table));
    m.tables.push_back(std::move(table));
  }
  return m;
}

}  // namespace triage
