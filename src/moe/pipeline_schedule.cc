// The shared pipeline schedule and the layout's flat encoding; see the header.
#include "moe/pipeline_schedule.h"

#include <memory>
#include <string>

#include "parallel/phase_clock.h"
#include "parallel/watchdog.h"

namespace triage {
namespace {

using Pending = std::vector<std::unique_ptr<PendingRows>>;

void encode_runs(const std::vector<ExpertRowRun>& runs, std::vector<int64_t>& code) {
  code.push_back(int64_t(runs.size()));
  for (const ExpertRowRun& run : runs) code.insert(code.end(), {run.expert, run.offset, run.rows});
}

}  // namespace

std::vector<int64_t> encode_layout(const ExpertLayout& layout, int ranks) {
  std::vector<int64_t> code = {ranks, layout.received_rows};
  encode_runs(layout.own_runs, code);
  code.push_back(int64_t(layout.chunks.size()));
  for (const ExchangeChunk& chunk : layout.chunks) {
    for (const auto* spans : {&chunk.send, &chunk.recv})
      for (const RowSpan& span : *spans) code.insert(code.end(), {span.offset, span.rows});
    encode_runs(chunk.runs, code);
  }
  return code;
}

ExpertLayout decode_layout(const std::vector<int64_t>& code) {
  size_t at = 0;
  auto next = [&] { return code.at(at++); };
  auto runs = [&] {
    std::vector<ExpertRowRun> out(static_cast<size_t>(next()));
    for (ExpertRowRun& run : out) run = {next(), next(), next()};
    return out;
  };
  ExpertLayout layout;
  const int64_t ranks = next();
  layout.received_rows = next();
  layout.own_runs = runs();
  layout.chunks.resize(size_t(next()));
  for (ExchangeChunk& chunk : layout.chunks) {
    for (auto* spans : {&chunk.send, &chunk.recv}) {
      spans->resize(size_t(ranks));
      for (RowSpan& span : *spans) span = {next(), next()};
    }
    chunk.runs = runs();
  }
  return layout;
}

namespace {

void progress(Pending& pending) {
  for (auto& transfer : pending)
    if (transfer) transfer->progress();
}

}  // namespace

void drive_pipeline(const ExpertLayout& layout, Communicator* ep, const PipelineBuffers& b,
                    const PipelinePhases& phases,
                    const std::function<void(const ExpertRowRun&, bool, int64_t)>& compute,
                    const InFlightWork& while_in_flight, bool grad_enabled,
                    const AfterRuns& after_runs) {
  Pending out, back;
  if (!layout.chunks.empty()) {
    phase_clock::enter(phases.out);
    phase_clock::wait_for_peers(*ep, is_backward(phases.out));
    for (const ExchangeChunk& chunk : layout.chunks)
      out.push_back(ep->start_alltoallv_rows(b.packed_in, chunk.send, b.received, chunk.recv));
  }
  run_in_flight_work(while_in_flight, grad_enabled);
  phase_clock::enter(phases.compute);
  int64_t act = 0;
  for (const ExpertRowRun& run : layout.own_runs) {
    compute(run, /*own=*/true, act);
    act += run.rows;
    progress(out);
  }
  const std::function<void()> nudge = [&] {
    progress(out);
    progress(back);
  };
  if (after_runs) after_runs(0, nudge);
  for (size_t j = 0; j < layout.chunks.size(); ++j) {
    const ExchangeChunk& chunk = layout.chunks[j];
    {
      phase_clock::enter(phases.out);
      watchdog::Scope scope(std::string(phase_label(phases.out)));
      out[j]->wait();
      out[j].reset();
    }
    phase_clock::enter(phases.compute);
    for (const ExpertRowRun& run : chunk.runs) {
      compute(run, /*own=*/false, act + run.offset);
      progress(out);
      progress(back);
    }
    if (after_runs) after_runs(int64_t(j) + 1, nudge);
    back.push_back(ep->start_alltoallv_rows(b.remote_out, chunk.recv, b.packed_out, chunk.send));
  }
  if (!back.empty()) {
    phase_clock::enter(phases.back);
    watchdog::Scope scope(std::string(phase_label(phases.back)));
    for (auto& transfer : back) transfer->wait();
  }
}

}  // namespace triage
