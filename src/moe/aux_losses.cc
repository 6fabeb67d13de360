// Load-balancing and z-loss formulas (see the header for the definitions).
#include "moe/aux_losses.h"

#include <cmath>

#include "moe/count_ids.h"
#include "parallel/autograd_collectives.h"
#include "parallel/watchdog.h"

namespace triage {

namespace {

// real_T as 0/1 in `like`'s dtype and device, one per row; ones when undefined.
at::Tensor real_weights(const at::Tensor& real_T, const at::Tensor& like) {
  return real_T.defined() ? real_T.to(like.options()) : at::ones({like.size(0)}, like.options());
}

}  // namespace

BalanceStats balance_stats(const at::Tensor& scores_TE, const at::Tensor& experts_TK,
                           const at::Tensor& real_T) {
  BalanceStats stats;
  const int64_t num_experts = scores_TE.size(1);
  const at::Tensor real_T1 = real_weights(real_T, scores_TE).unsqueeze(1);
  stats.tokens = real_T.defined() ? real_T1.sum()
                                  : at::full({}, double(scores_TE.size(0)), scores_TE.options());
  stats.top_k = experts_TK.size(1);
  stats.tokens_per_expert_E =
      (real_T.defined() ? count_ids(experts_TK, num_experts,
                                    real_T.to(at::kBool).unsqueeze(1).expand_as(experts_TK))
                        : count_ids(experts_TK, num_experts))
          .to(scores_TE.scalar_type());
  at::Tensor probs_TE = scores_TE / scores_TE.sum(-1, /*keepdim=*/true);
  stats.prob_sum_E = (real_T.defined() ? probs_TE * real_T1 : probs_TE).sum(0);
  return stats;
}

BalanceStats all_reduce(const BalanceStats& local, Communicator& group) {
  watchdog::Scope scope("balance-loss all-reduce");
  // One all-reduce for the three sums (each is a sync point every rank waits at): the
  // probability sums (differentiable), the assignment counts and the token count, as whole
  // numbers in the scores' dtype (exact in float32 up to 2^24 per expert and step).
  const int64_t experts = local.prob_sum_E.size(0);
  const at::Tensor packed =
      at::cat({local.prob_sum_E, local.tokens_per_expert_E.to(local.prob_sum_E.scalar_type()),
               local.tokens.reshape({1})});
  // Every rank adds the same balance loss of these sums to its loss (see balance_loss).
  const at::Tensor summed = allreduce_sum_autograd(packed, group, /*used_alike=*/true);
  BalanceStats global = local;
  global.prob_sum_E = summed.narrow(0, 0, experts);
  global.tokens_per_expert_E = summed.narrow(0, experts, experts).detach();
  global.tokens = summed[2 * experts].detach();
  return global;
}

at::Tensor balance_loss(const BalanceStats& stats, double alpha) {
  // With no tokens every sum is 0, and so is the loss: the clamp only avoids 0 / 0.
  const double num_experts = double(stats.tokens_per_expert_E.size(0));
  const at::Tensor tokens = stats.tokens.clamp_min(1.0);
  at::Tensor f_E = stats.tokens_per_expert_E / (tokens * double(stats.top_k));
  at::Tensor p_E = stats.prob_sum_E / tokens;
  return alpha * num_experts * (f_E * p_E).sum();
}

SequenceBalance sequence_balance(const at::Tensor& scores_TE, const at::Tensor& experts_TK,
                                 int64_t sequences, double alpha, const at::Tensor& real_T) {
  const int64_t experts = scores_TE.size(1), top_k = experts_TK.size(1);
  SequenceBalance stats;
  stats.sequences = at::full({}, double(sequences), scores_TE.options());
  if (sequences == 0) {
    stats.loss_sum = at::zeros({}, scores_TE.options());
    return stats;
  }
  const int64_t length = scores_TE.size(0) / sequences;
  // Assignments per (sequence, expert): expert ids offset by sequence * experts.
  const at::Tensor sequence_of_TK =
      at::arange(sequences, experts_TK.options()).repeat_interleave(length * top_k);
  const at::Tensor ids_A = experts_TK.reshape({-1}) + sequence_of_TK * experts;
  const at::Tensor probs_TE = scores_TE / scores_TE.sum(-1, /*keepdim=*/true);
  at::Tensor f_SE, p_SE;
  if (!real_T.defined()) {
    f_SE = count_ids(ids_A, sequences * experts)
               .view({sequences, experts})
               .to(scores_TE.scalar_type()) /
           double(length * top_k);
    p_SE = probs_TE.view({sequences, length, experts}).mean(1);
  } else {
    const at::Tensor real_T1 = real_weights(real_T, scores_TE).unsqueeze(1);
    const at::Tensor routed_SE =
        count_ids(ids_A, sequences * experts, real_T1.expand_as(experts_TK).to(at::kBool))
            .view({sequences, experts})
            .to(scores_TE.scalar_type());
    const at::Tensor real_S1 = real_T1.view({sequences, length}).sum(1, /*keepdim=*/true);
    f_SE = routed_SE / (real_S1.clamp_min(1.0) * double(top_k));
    p_SE = (probs_TE * real_T1).view({sequences, length, experts}).sum(1) / real_S1.clamp_min(1.0);
    stats.sequences = (real_S1 > 0).sum().to(scores_TE.scalar_type());
  }
  stats.loss_sum = alpha * double(experts) * (f_SE * p_SE).sum();
  return stats;
}

SequenceBalance all_reduce(const SequenceBalance& local, Communicator& group) {
  watchdog::Scope scope("balance-loss all-reduce");
  const at::Tensor packed = at::stack({local.loss_sum, local.sequences.to(local.loss_sum.dtype())});
  const at::Tensor summed = allreduce_sum_autograd(packed, group, /*used_alike=*/true);
  return {summed[0], summed[1].detach()};
}

at::Tensor balance_loss(const SequenceBalance& stats) {
  return stats.loss_sum / stats.sequences.clamp_min(1.0);  // 0 / 1 with no sequences
}

at::Tensor z_loss(const at::Tensor& logits_TE, double beta, const at::Tensor& real_T) {
  if (logits_TE.size(0) == 0) return at::zeros({}, logits_TE.options());
  const at::Tensor squares_T = at::logsumexp(logits_TE, -1).pow(2);
  if (!real_T.defined()) return beta * squares_T.mean();
  // Real tokens only, over the batch's positions: every rank holds as many positions, so
  // the ranks' mean is the one-rank figure on any layout (a mean over each rank's own
  // real tokens would weigh ranks with more padding more).
  return beta * (squares_T * real_weights(real_T, squares_T)).sum() / double(squares_T.size(0));
}

ImportanceLoad importance_load(const at::Tensor& weights_TK, const at::Tensor& experts_TK,
                               const at::Tensor& noisy_logits_TE, const at::Tensor& clean_logits_TE,
                               const at::Tensor& noise_std_TE, const at::Tensor& real_T) {
  const int64_t experts = noisy_logits_TE.size(1), top_k = experts_TK.size(1);
  const at::Tensor real_T1 = real_weights(real_T, noisy_logits_TE).unsqueeze(1);
  ImportanceLoad sums;
  sums.importance_E = (at::zeros(noisy_logits_TE.sizes(), noisy_logits_TE.options())
                           .scatter(1, experts_TK, weights_TK.to(noisy_logits_TE.scalar_type())) *
                       real_T1)
                          .sum(0);
  if (top_k >= experts) {  // every expert is always chosen: a load of one per token
    sums.load_E = real_T1.sum().expand({experts}).clone();
    return sums;
  }
  // The noisy logits are fixed numbers here (Shazeer: the threshold carries no gradient).
  const at::Tensor top_TJ = std::get<0>(noisy_logits_TE.detach().topk(top_k + 1, -1));
  const at::Tensor kth_T1 = top_TJ.narrow(1, top_k - 1, 1), next_T1 = top_TJ.narrow(1, top_k, 1);
  const at::Tensor in_top_TE = noisy_logits_TE.detach() >= kth_T1;
  // Without expert i, the k-th largest of the others is the (k+1)-th overall if i is in the
  // top k, else the k-th.
  const at::Tensor threshold_TE = at::where(in_top_TE, next_T1, kth_T1);
  const at::Tensor z_TE = (clean_logits_TE - threshold_TE) / noise_std_TE;
  sums.load_E = (0.5 * at::erfc(-z_TE / std::sqrt(2.0)) * real_T1).sum(0);
  return sums;
}

ImportanceLoad all_reduce(const ImportanceLoad& local, Communicator& group) {
  watchdog::Scope scope("balance-loss all-reduce");
  const int64_t experts = local.importance_E.size(0);
  const at::Tensor summed = allreduce_sum_autograd(
      at::cat({local.importance_E, local.load_E.to(local.importance_E.scalar_type())}), group,
      /*used_alike=*/true);
  return {summed.narrow(0, 0, experts), summed.narrow(0, experts, experts)};
}

at::Tensor cv_squared_loss(const ImportanceLoad& sums, double alpha) {
  auto cv_squared = [](const at::Tensor& v_E) {
    const at::Tensor mean = v_E.mean();
    return (v_E - mean).pow(2).mean() / (mean.pow(2) + 1e-10);
  };
  return alpha * (cv_squared(sums.importance_E) + cv_squared(sums.load_E));
}

}  // namespace triage
