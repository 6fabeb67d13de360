// Loss sums over one rank's slice of a batch. Sums, not means: the trainer divides by the
// global count (tokens or labelled sequences in the whole step, over every rank and
// micro-batch), so the objective is the same whatever the layout or padding.
#pragma once

#include <ATen/ATen.h>

namespace triage {

// Next-token cross-entropy summed over the positions where target_BL is 1.
at::Tensor token_cross_entropy_sum(const at::Tensor& logits_BLV, const at::Tensor& targets_BL,
                                   const at::Tensor& target_BL);

// Sequence-label cross-entropy summed over rows with labels_B >= 0.
at::Tensor sequence_cross_entropy_sum(const at::Tensor& logits_BC, const at::Tensor& labels_B);

// Rows with labels_B >= 0 whose arg-max class is the label.
int64_t correct_predictions(const at::Tensor& logits_BC, const at::Tensor& labels_B);

}  // namespace triage
