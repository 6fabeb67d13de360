// Expert-choice routing (Zhou et al. 2022): instead of each row (token or sequence) picking
// its top-k experts, each expert picks the `capacity` rows of the batch it scores highest.
// Every expert is then exactly full (balanced by construction, no balance loss needed) and
// a row may be taken by any number of experts, 0 to E.
//
// The batch is a slice of the global batch (moe.expert_choice_slices; by default one per
// EP group, so every copy of an expert takes exactly its share), not this rank's rows
// alone: each expert's C-th best score over the slice is found by radix selection on
// all-reduced histograms (12 all-reduces of E x 256 counts per layer, no gradient; ties go
// to the earlier row of the group's batch), and each rank keeps its own rows above it.
// No rank holds the slice's scores, so the cost per rank is O(E) whatever the world size,
// and the choice is the one the one-rank reference makes on the same slice, for any EP
// layout. (The former all-reduce of the whole rows x E score matrix was 0.5 GB a layer at
// 256 ranks and passed MPI's int count at 2,048 ranks x 256 experts.)
//
// Where it leaks: whether row t is taken depends on every other row's score, later tokens
// of t's own sequence included, so a causal LM loss could read the future through it (and
// inference, one token at a time, cannot route this way). Sound for classification, and
// for sequence-level routing, which sees the whole sequence anyway.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "parallel/communicator.h"

namespace triage {

// The choice in the token-choice layout, K = E: experts_RE lists every expert, by the row's
// score best first (so column 0 is the row's favourite); taken_RE says which took the row.
struct ExpertChoice {
  at::Tensor experts_RE;  // int64
  at::Tensor taken_RE;    // bool
};

// Where a layout's slices lie: each rank's rows are `per_rank` whole slices (no
// communication), or one rank's part of a slice spread over `span` consecutive ranks.
struct ExpertChoiceSlices {
  int64_t per_rank = 1;
  int64_t span = 1;
};

// The slices of `slices` (0: one per EP group) on `world` ranks in EP groups of `ep`.
// Throws Error naming moe.expert_choice_slices when the layout cannot hold them: a slice
// must be whole ranks of the world or of one EP group, or a rank must hold whole slices.
ExpertChoiceSlices expert_choice_slices(int64_t slices, int64_t world, int64_t ep);

// scores_RE: this rank's rows; eligible_R (bool, or undefined for all): rows an expert may
// take (padding is not). group: the ranks whose rows form the batch, each with as many rows
// (nullptr: this rank's rows alone). Ties go to the earlier row.
ExpertChoice choose_by_experts(const at::Tensor& scores_RE, const at::Tensor& eligible_R,
                               int64_t capacity, Communicator* group);

}  // namespace triage
