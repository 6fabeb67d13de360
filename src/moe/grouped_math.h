// The arithmetic of all local experts on a block of runs at once, forward and backward,
// with ATen's grouped GEMM (at::_grouped_mm): the grouped path's counterpart of
// expert_math's run-by-run loop, for the pipelined exchanges, which compute a block (the
// own rows, or one chunk's) at a time. Outside autograd, like expert_math.
// Legend: N rows of the block, D model width, H expert hidden width, E local experts.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "moe/expert_math.h"
#include "moe/expert_pipeline.h"

namespace triage {

// A block's rows in expert order (stable), as the grouped GEMM takes them. Runs that are
// already contiguous and by ascending expert are read in place (no index).
struct ExpertBlock {
  int64_t begin = 0;  // first row of the runs' span in their buffer
  int64_t rows = 0;
  at::Tensor order;  // int64 [rows]: buffer row of each sorted row; undefined when in place
  at::Tensor ends;   // int32 [E]: cumulative rows per expert (the grouped GEMM's offsets)
  std::vector<int64_t> idle_experts;  // local experts with no rows in the block

  at::Tensor gather(const at::Tensor& buffer) const;
  void scatter(at::Tensor buffer, const at::Tensor& sorted) const;
};

// The runs must tile one span of their buffer (in any expert order). Index lists are built
// on the host from the run lengths and go to `device` without a sync.
ExpertBlock expert_block(const std::vector<ExpertRowRun>& runs, int64_t experts,
                         const at::Device& device);

// grouped_forward's pre-activations alone, for backward to recompute them bit for bit.
void grouped_preactivations(const ExpertWeights& weights, const ExpertBlock& block,
                            const at::Tensor& x_ND, at::Tensor gate_NH, at::Tensor up_NH,
                            const std::function<void()>& between = {});

// Writes the pre-activations gate_NH (and up_NH for swiglu) and y_ND for x_ND in expert
// order; the outputs are the caller's buffers (or slices of them). between(), when given,
// runs between the GEMMs (a pipeline's nudge to its transfers).
void grouped_forward(const ExpertWeights& weights, const ExpertBlock& block, const at::Tensor& x_ND,
                     at::Tensor gate_NH, at::Tensor up_NH, at::Tensor y_ND,
                     const std::function<void()>& between = {});

// Returns grad_x_ND and adds the block's share of every expert's weight gradients to
// `grads` (the first block writes them; an idle expert's share is zero, set here rather than
// trusted to the GEMM, which need not write the groups it has no rows for).
at::Tensor grouped_backward(const ExpertWeights& weights, const ExpertBlock& block,
                            const at::Tensor& x_ND, const at::Tensor& gate_NH,
                            const at::Tensor& up_NH, const at::Tensor& grad_y_ND,
                            ExpertGrads& grads, const std::function<void()>& between = {});

}  // namespace triage
