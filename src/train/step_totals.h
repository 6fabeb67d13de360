// What one training step adds up on every rank and then sums over the world, in one
// all-reduce, before it is reported: the objective's sums, routing counts per MoE layer,
// the receive bound's drops, and the preemption vote. The packing into one vector lives
// here only, so the trainer reads named fields.
#pragma once

#include <cstdint>
#include <vector>

#include "moe/moe_layer.h"
#include "parallel/communicator.h"

namespace triage {

struct StepTotals {
  // world_rank, world_size: where this rank's received rows go in received_rows.
  StepTotals(int64_t moe_layers, int64_t experts, int64_t ep_size, int world_rank = 0,
             int world_size = 1);

  // One micro-batch's MoE statistics, layer by layer.
  void add(const std::vector<MoeStats>& stats);
  // Every field summed over `world`'s ranks, in one all-reduce (collective).
  void sum_over(Communicator& world);

  double lm_loss_sum = 0;     // token cross-entropy, summed over predicted tokens
  double class_loss_sum = 0;  // sequence cross-entropy, summed over labelled sequences
  double balance_loss = 0;    // summed over micro-batches (and, after sum_over, ranks)
  double z_loss = 0;
  double dropped = 0;                                  // assignments over capacity
  double assignments = 0;                              // assignments routed
  std::vector<std::vector<double>> tokens_per_expert;  // [MoE layer][global expert]
  std::vector<std::vector<double>> bound_dropped;      // [MoE layer][EP rank]
  std::vector<std::vector<double>> received_rows;      // [MoE layer][world rank]
  double preemption_votes = 0;  // signals received (any rank's stops every rank)

 private:
  int world_rank_ = 0;
};

}  // namespace triage
