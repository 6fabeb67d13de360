#include "train/objective.h"

namespace triage {

namespace {
// Cross-entropy is taken in at least float32, also when the logits come out of bf16 autocast.
at::Tensor log_probabilities(const at::Tensor& logits) {
  return at::log_softmax(logits, -1,
                         logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
}
}  // namespace

at::Tensor token_cross_entropy_sum(const at::Tensor& logits_BLV, const at::Tensor& targets_BL,
                                   const at::Tensor& target_BL) {
  at::Tensor log_probs = log_probabilities(logits_BLV);
  at::Tensor picked = log_probs.gather(-1, targets_BL.unsqueeze(-1)).squeeze(-1);
  return -(picked * target_BL.to(picked.scalar_type())).sum();
}

at::Tensor sequence_cross_entropy_sum(const at::Tensor& logits_BC, const at::Tensor& labels_B) {
  at::Tensor labelled = labels_B >= 0;
  at::Tensor log_probs = log_probabilities(logits_BC);
  at::Tensor picked = log_probs.gather(-1, labels_B.clamp_min(0).unsqueeze(-1)).squeeze(-1);
  return -(picked * labelled.to(picked.scalar_type())).sum();
}

int64_t correct_predictions(const at::Tensor& logits_BC, const at::Tensor& labels_B) {
  return ((logits_BC.argmax(-1) == labels_B) & (labels_B >= 0)).sum().item<int64_t>();
}

}  // namespace triage
