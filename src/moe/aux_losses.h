// Router auxiliary losses, returned separately from the layer output.
//
// Switch load-balancing loss  L_bal = alpha * E * sum_i f_i * P_i  where, over T tokens
// with K choices each (counted before capacity drops),
//   f_i = (number of assignments routed to expert i) / (T * K)   -- fraction of traffic
//   P_i = (1/T) * sum_t p_t,i                                     -- mean router probability
// and p_t is token t's score vector normalised to sum 1 (softmax scores already do; sigmoid
// scores are divided by their sum). f is piecewise constant, so gradients flow through P.
// With perfectly uniform routing L_bal = alpha.
//
// Router z-loss  L_z = beta * (1/T) * sum_t logsumexp(logits_t)^2  keeps logits small; with
// padding, the sum is over real tokens and T counts positions (equal on every rank, so the
// ranks' mean does not depend on the layout).
//
// Padding never counts: each function takes real_T (bool or 0/1, optional), and T above is
// the number of real tokens (rows); padding rows add nothing to any sum or count (the
// z-loss's divisor aside, below).
//
// Communication: under balance_loss_mode global, one all-reduce per layer of the loss's
// sums (whichever loss and scope). The layer's other collectives are the exchange's and,
// under expert-choice routing, its selection's (expert_choice.h).
#pragma once

#include <ATen/ATen.h>

#include "parallel/communicator.h"

namespace triage {

// Sums from which L_bal is formed; kept as sums so that ranks can all-reduce them. The
// counts stay tensors on the scores' device (reading one back would stall a GPU).
struct BalanceStats {
  at::Tensor tokens_per_expert_E;  // routed assignment counts (no gradient)
  at::Tensor prob_sum_E;           // sum over tokens of p_t,i (carries gradient)
  at::Tensor tokens;               // scalar count, in the scores' dtype
  int64_t top_k = 0;
};

BalanceStats balance_stats(const at::Tensor& scores_TE, const at::Tensor& experts_TK,
                           const at::Tensor& real_T = {});

// The global mode: the stats summed over `group` (the world, in training), so every rank forms
// the loss of the group's whole batch. The three sums travel in one packed all-reduce per
// layer; prob_sum keeps its gradient, and its backward needs no collective: every rank
// adds the same loss of the same sums, so each rank's gradient of the sum is the group
// size times its own.
BalanceStats all_reduce(const BalanceStats& local, Communicator& group);

at::Tensor balance_loss(const BalanceStats& stats, double alpha);

// The sequence-wise balance loss (DeepSeek-V3): scores_TE and experts_TK hold `sequences`
// equal-length sequences in order; each sequence's L_bal is formed from its own tokens.
// Kept as a sum over sequences and their number, so that ranks can all-reduce them.
struct SequenceBalance {
  at::Tensor loss_sum;   // alpha-scaled, summed over sequences (carries gradient)
  at::Tensor sequences;  // scalar count, in the loss's dtype
};
// With real_T, each sequence's f and P are over its real tokens, and sequences with none
// are not counted.
SequenceBalance sequence_balance(const at::Tensor& scores_TE, const at::Tensor& experts_TK,
                                 int64_t sequences, double alpha, const at::Tensor& real_T = {});
// The global mode for it; one all-reduce, the same gradient argument as above.
SequenceBalance all_reduce(const SequenceBalance& local, Communicator& group);
at::Tensor balance_loss(const SequenceBalance& stats);  // the mean over sequences
at::Tensor z_loss(const at::Tensor& logits_TE, double beta, const at::Tensor& real_T = {});

// Shazeer et al. 2017's importance and load losses (moe.balance_loss_type cv_squared):
//   importance_i = sum_t g_t,i       (combine weights; 0 where expert i was not chosen)
//   load_i       = sum_t Phi((clean_t,i - kth_t,i) / std_t,i)
// where kth_t,i is the k-th largest noisy logit of token t among the experts other than i:
// load_i is the expected number of tokens that would choose i if only its own noise were
// drawn again, a smooth (differentiable) stand-in for the count.
//   L = alpha * (CV^2(importance) + CV^2(load)),  CV^2(v) = var(v) / mean(v)^2 over experts.
struct ImportanceLoad {
  at::Tensor importance_E, load_E;  // sums over tokens (carry gradient)
};
ImportanceLoad importance_load(const at::Tensor& weights_TK, const at::Tensor& experts_TK,
                               const at::Tensor& noisy_logits_TE, const at::Tensor& clean_logits_TE,
                               const at::Tensor& noise_std_TE, const at::Tensor& real_T = {});
// The global mode: both sums over `group`, one all-reduce, as for BalanceStats.
ImportanceLoad all_reduce(const ImportanceLoad& local, Communicator& group);
at::Tensor cv_squared_loss(const ImportanceLoad& sums, double alpha);

}  // namespace triage
