// Each expert's C-th best row of the group's batch is found by radix selection over
// all-reduced histograms, so no rank ever holds the group's scores: per layer 12 small
// all-reduces of E x 256 counts (8 for the score's bytes, 4 for the row index that breaks
// ties), O(E) numbers per rank whatever the world size. The selection is exact: the taken
// rows are those the one-rank reference's stable sort of the whole batch takes.
#include "moe/expert_choice.h"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <limits>
#include <string>

#include "common/error.h"
#include "parallel/watchdog.h"

namespace triage {
namespace {

constexpr int64_t kDigits = 256;  // one byte of a key per round

// Sums `counts` over the group (no-op on one rank): the only communication here.
void sum_over(at::Tensor& counts, Communicator* group) {
  if (!group || group->size() == 1) return;
  watchdog::Scope scope("expert-choice all-reduce");
  group->allreduce_sum_(counts);
}

// One round of radix selection, per expert: among the candidate rows (candidates_RE), the
// digit (bits [shift, shift + 8) of key_RE) that holds the want_E-th row in the order the
// selection walks (from the largest digit when `largest`, else from the smallest). Returns
// that digit per expert and lowers want_E by the rows in digits walked past; the caller
// narrows the candidates to rows with that digit.
at::Tensor select_digit(const at::Tensor& key_RE, const at::Tensor& candidates_RE, int shift,
                        bool largest, at::Tensor& want_E, Communicator* group) {
  const int64_t experts = key_RE.size(1);
  const at::Tensor digit_RE = key_RE.bitwise_right_shift(shift).bitwise_and(kDigits - 1);
  const at::Tensor bin_RE = digit_RE + at::arange(experts, key_RE.options()).unsqueeze(0) * kDigits;
  // Counted without reading anything back to the host (a GPU would stall).
  at::Tensor counts =
      at::zeros({experts * kDigits}, key_RE.options().dtype(at::kDouble))
          .index_add_(0, bin_RE.reshape({-1}), candidates_RE.reshape({-1}).to(at::kDouble));
  sum_over(counts, group);
  at::Tensor counts_ED = counts.view({experts, kDigits});
  if (largest) counts_ED = counts_ED.flip(1);  // walk from the largest digit
  const at::Tensor through_ED = counts_ED.cumsum(1);
  // The walk stops at the first digit whose running count reaches want.
  const at::Tensor position_E =
      (through_ED < want_E.unsqueeze(1)).sum(1).clamp_max(kDigits - 1).to(at::kLong);
  const at::Tensor before_E =
      (through_ED - counts_ED).gather(1, position_E.unsqueeze(1)).squeeze(1);
  want_E = want_E - before_E;
  return largest ? (kDigits - 1) - position_E : position_E;
}

// Per expert, the want_E-th of the candidates' keys from the largest (or the smallest),
// found a byte at a time over bits [0, bits) of the non-negative keys. Narrows
// candidates_RE to the rows holding it and leaves in want_E how many of them to take.
at::Tensor radix_select(const at::Tensor& key_RE, at::Tensor& candidates_RE, int bits, bool largest,
                        at::Tensor& want_E, Communicator* group) {
  at::Tensor value_E = at::zeros({key_RE.size(1)}, key_RE.options());
  for (int shift = bits - 8; shift >= 0; shift -= 8) {
    const at::Tensor digit_E = select_digit(key_RE, candidates_RE, shift, largest, want_E, group);
    value_E.bitwise_or_(digit_E.bitwise_left_shift(shift));
    candidates_RE.logical_and_(key_RE.bitwise_right_shift(shift).bitwise_and(kDigits - 1) ==
                               digit_E.unsqueeze(0));
  }
  return value_E;
}

}  // namespace

ExpertChoiceSlices expert_choice_slices(int64_t slices, int64_t world, int64_t ep) {
  if (slices == 0) slices = std::max<int64_t>(1, world / ep);
  ExpertChoiceSlices plan;
  if (slices % world == 0) {
    plan.per_rank = slices / world;
  } else if (slices == 1 || (world % slices == 0 && world / slices == ep)) {
    plan.span = world / slices;
  } else {
    throw Error("moe.expert_choice_slices = " + std::to_string(slices) + " on " +
                std::to_string(world) + " ranks (parallel.expert " + std::to_string(ep) +
                "): expected 1, the number of EP groups (" + std::to_string(world / ep) +
                ") or a multiple of the ranks");
  }
  return plan;
}

ExpertChoice choose_by_experts(const at::Tensor& scores_RE, const at::Tensor& eligible_R,
                               int64_t capacity, Communicator* group) {
  c10::NoGradGuard no_grad;
  const at::Tensor scores = scores_RE.detach().to(at::kDouble).contiguous();
  const int64_t rows = scores.size(0), experts = scores.size(1);
  const int64_t ranks = group ? group->size() : 1, offset = group ? group->rank() * rows : 0;
  TRIAGE_ASSERT(ranks * rows < (int64_t(1) << 32),
                "expert choice over " << ranks * rows << " rows: at most 2^32");
  // Scores are in [0, 1] (softmax or sigmoid): the bits of a non-negative double order
  // like the numbers, so they are the key.
  const at::Tensor key_RE = scores.clamp_min(0.0).view(at::kLong);
  const at::TensorOptions on = key_RE.options();
  at::Tensor eligible_RE = at::ones({rows, experts}, on.dtype(at::kBool));
  if (eligible_R.defined())
    eligible_RE = eligible_R.to(at::kBool).unsqueeze(1).expand({rows, experts}).clone();

  // How many each expert takes: C, or every eligible row of the group when fewer.
  at::Tensor eligible_E = eligible_RE.sum(0).to(at::kDouble);
  sum_over(eligible_E, group);
  at::Tensor want_E = eligible_E.clamp_max(double(capacity));
  const at::Tensor takes_E = want_E > 0;

  // The C-th largest key per expert; then, among the rows holding it, the want_E earliest
  // of the group's batch (as a stable sort would order them): the want_E-th smallest row.
  at::Tensor candidates_RE = eligible_RE.clone();
  const at::Tensor threshold_E = radix_select(key_RE, candidates_RE, 64, true, want_E, group);
  const at::Tensor row_RE =
      at::arange(offset, offset + rows, on).unsqueeze(1).expand({rows, experts});
  const at::Tensor last_row_E = radix_select(row_RE, candidates_RE, 32, false, want_E, group);
  const at::Tensor above_RE = key_RE > threshold_E.unsqueeze(0);
  const at::Tensor at_RE =
      (key_RE == threshold_E.unsqueeze(0)) & (row_RE <= last_row_E.unsqueeze(0));
  const at::Tensor mine_RE = eligible_RE & (above_RE | at_RE) & takes_E.unsqueeze(0);

  ExpertChoice choice;
  choice.experts_RE = std::get<1>(scores_RE.detach()
                                      .to(at::kDouble)
                                      .sort(/*stable=*/true, /*dim=*/1,
                                            /*descending=*/true));
  choice.taken_RE = mine_RE.gather(1, choice.experts_RE);
  return choice;
}

}  // namespace triage
