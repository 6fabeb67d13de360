// The experts applied to rows packed by global expert, wherever those experts live: the
// expert-parallel exchange and the expert compute as one differentiable step.
//   - Rows for this rank's own experts never travel: the experts read them in place from
//     the packed buffer and write their outputs in place into the returned buffer.
//   - The other rows travel in `chunks` exchanges, chunk j carrying the rows for one group
//     of each rank's local experts; the experts compute on chunk j while later chunks are
//     in flight, and chunk j's outputs start home as soon as they are ready. Backward runs
//     the same pipeline with the gradients.
//   - Each row is computed by its expert's run alone (see expert_math.h) and each expert
//     adds up its runs' gradients in one order (own rows, then sources by rank) for any
//     chunking, so the results do not depend on `chunks`, bit for bit.
// With no communicator (one process, all experts local) the runs are taken as given: the
// reference path computes with exactly the same per-run arithmetic.
// Legend: P ranks, L local experts, R packed rows, S received rows, D width.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "moe/expert_math.h"
#include "parallel/autograd_collectives.h"
#include "parallel/communicator.h"

namespace triage {

// Rows [offset, offset + rows) of a buffer, for one local expert.
struct ExpertRowRun {
  int64_t expert;
  int64_t offset;
  int64_t rows;
};

// One exchange of the pipeline: per rank, the packed rows that go there and where the
// rows from there land in the receive buffer, and the runs those received rows form.
struct ExchangeChunk {
  std::vector<RowSpan> send;
  std::vector<RowSpan> recv;
  std::vector<ExpertRowRun> runs;  // in the receive buffer, by source rank then expert
};

struct ExpertLayout {
  std::vector<ExpertRowRun> own_runs;  // in the packed buffer: rows this rank's experts take
  std::vector<ExchangeChunk> chunks;
  int64_t received_rows = 0;
};

// send_counts_PL[p * L + l]: packed rows for rank p's local expert l (the packed buffer is
// in that order); recv_counts_PL[p * L + l]: rows rank p sends for this rank's expert l.
// `chunks` is clamped to 1..L.
ExpertLayout expert_parallel_layout(const std::vector<int64_t>& send_counts_PL,
                                    const std::vector<int64_t>& recv_counts_PL, int rank, int ranks,
                                    int64_t chunks);

// Returns each packed row's expert output, in packed order. `ep` may be null only when the
// layout has no chunks. Differentiable in x_RD and the weights. while_in_flight runs once,
// after the outgoing exchanges start and before any expert computes. grouped: each group of
// runs (the own runs, then each chunk's) is one grouped GEMM per matrix (grouped_math.h)
// instead of one GEMM per run; an expert's weight gradient then adds per group.
// recompute: the experts' hidden pre-activations are not kept for backward, which makes
// them again (train.recompute: experts); the gradients are the same bits.
at::Tensor run_experts(const at::Tensor& x_RD, const ExpertWeights& weights,
                       const ExpertLayout& layout, Communicator* ep,
                       const InFlightWork& while_in_flight = {}, bool grouped = false,
                       bool recompute = false);

// Rows whose hidden pre-activations backward has recomputed in this process so far (for
// tests and benchmarks: proof that train.recompute took effect).
int64_t recomputed_expert_rows();
void count_recomputed_expert_rows(int64_t rows);

// The same pipeline with every expert the identity: the exchange alone, for benchmarks.
at::Tensor exchange_rows(const at::Tensor& x_RD, const ExpertLayout& layout, Communicator& ep);

}  // namespace triage
