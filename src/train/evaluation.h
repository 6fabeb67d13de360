// Held-out evaluation: the LM and classification losses, accuracy, and, per MoE layer, the
// contingency table of labels against each token's first-choice expert with its NMI
// (how far experts specialise in families). Every rank evaluates its slice of each
// held-out batch; one all-reduce sums what they saw.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "config/config.h"
#include "data/dataset.h"
#include "model/transformer.h"
#include "parallel/communicator.h"
#include "parallel/process_groups.h"
#include "train/metrics.h"

namespace triage {

struct EvalSetup {
  const Sequences* test;  // the held-out sequences, the same on every rank
  int64_t labels = 0;     // label names (0: no contingency tables)
  int64_t moe_layers = 0;
  bool lm = true, classify = false;  // which heads train.loss uses
};

// to_device: a host batch onto the model's device; forward: the model in eval mode.
// Collective over `world`.
EvalMetrics evaluate(const std::function<Batch(Batch)>& to_device,
                     const std::function<ModelOutput(const Batch&)>& forward,
                     const EvalSetup& setup, const Config& config, const GroupLayout& layout,
                     Communicator& world, int64_t step);

}  // namespace triage
