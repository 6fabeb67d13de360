// The group's scores are assembled by an all-reduce of zero-padded slices: adding zeros
// is exact, so every rank (and the one-rank reference) ranks bit-identical numbers.
#include "moe/expert_choice.h"

#include <c10/core/GradMode.h>

#include <algorithm>

#include "parallel/watchdog.h"

namespace triage {

ExpertChoice choose_by_experts(const at::Tensor& scores_RE, const at::Tensor& eligible_R,
                               int64_t capacity, Communicator* group) {
  c10::NoGradGuard no_grad;
  const int64_t rows = scores_RE.size(0), experts = scores_RE.size(1);
  // Scores are in [0, 1] (softmax or sigmoid): -1 puts ineligible rows last.
  at::Tensor ranked_RE = scores_RE.detach().to(at::kDouble);
  if (eligible_R.defined()) ranked_RE = ranked_RE.masked_fill(~eligible_R.unsqueeze(1), -1.0);
  const int64_t ranks = group ? group->size() : 1, offset = group ? group->rank() * rows : 0;
  at::Tensor batch_GE = ranked_RE;
  if (group && ranks > 1) {
    watchdog::Scope scope("expert-choice all-reduce");
    batch_GE = at::zeros({ranks * rows, experts}, ranked_RE.options());
    batch_GE.narrow(0, offset, rows).copy_(ranked_RE);
    group->allreduce_sum_(batch_GE);
  }
  const int64_t take = std::min(capacity, batch_GE.size(0));
  // A stable sort down each expert's column: ties keep the earlier row first.
  const at::Tensor order_GE =
      std::get<1>(batch_GE.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  at::Tensor taken_GE = at::zeros(batch_GE.sizes(), batch_GE.options().dtype(at::kBool));
  taken_GE.scatter_(0, order_GE.narrow(0, 0, take), true);
  taken_GE = taken_GE & (batch_GE >= 0);
  const at::Tensor mine_RE = taken_GE.narrow(0, offset, rows);

  ExpertChoice choice;
  choice.experts_RE = std::get<1>(ranked_RE.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
  choice.taken_RE = mine_RE.gather(1, choice.experts_RE);
  return choice;
}

}  // namespace triage
