// The schedule both pipelined exchanges share (per choice: expert_pipeline.h; per
// destination rank: token_pipeline.h), in one direction: every chunk's outgoing exchange
// starts at once; the work for their time in flight, then this rank's own runs compute
// while they travel; then chunk by chunk: wait, compute its runs, start its results home.
// MPI moves large messages only inside MPI calls, so the transfers are nudged between runs.
// The layout travels to an autograd function's backward as one flat list of integers
// (saved_data holds only IValues).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "moe/expert_pipeline.h"
#include "parallel/autograd_collectives.h"
#include "parallel/communicator.h"
#include "parallel/phases.h"

namespace triage {

std::vector<int64_t> encode_layout(const ExpertLayout& layout, int ranks);
ExpertLayout decode_layout(const std::vector<int64_t>& code);

// The four buffers of one direction (forward: rows out, outputs back; backward: output
// gradients out, input gradients back).
struct PipelineBuffers {
  at::Tensor packed_in;   // the outgoing exchange's source (chunk.send spans)
  at::Tensor received;    // where the outgoing exchange lands (chunk.recv spans)
  at::Tensor remote_out;  // the return exchange's source (chunk.recv spans)
  at::Tensor packed_out;  // where the return exchange lands (chunk.send spans)
};

using AfterRuns = std::function<void(int64_t group, const std::function<void()>& nudge)>;

struct PipelinePhases {
  Phase out;      // waiting for the outgoing exchange
  Phase compute;  // the experts
  Phase back;     // waiting for the return exchange
};

// compute(run, own, act): one run (own: one of layout.own_runs); act counts the rows of the
// runs before it in own-then-chunk order plus, for chunk runs, run.offset (the first row of
// the run in pre-activation buffers laid out as expert_pipeline's). after_runs(group), when
// given, runs after the own runs (group 0) and after chunk j's runs (group j + 1), before
// that chunk's results start home.
void drive_pipeline(const ExpertLayout& layout, Communicator* ep, const PipelineBuffers& buffers,
                    const PipelinePhases& phases,
                    const std::function<void(const ExpertRowRun&, bool, int64_t)>& compute,
                    const InFlightWork& while_in_flight = {}, bool grad_enabled = false,
                    const AfterRuns& after_runs = {});

}  // namespace triage
