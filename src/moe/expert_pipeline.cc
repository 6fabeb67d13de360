// Exchange and experts as one pipelined autograd function; see the header.
#include "moe/expert_pipeline.h"

#include <tuple>
#include <utility>

#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>

#include "common/error.h"
#include "moe/grouped_math.h"
#include "moe/pipeline_schedule.h"
#include "parallel/autograd_collectives.h"
#include "parallel/phase_clock.h"
#include "parallel/watchdog.h"

namespace triage {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Row slices of the pre-activation buffers: own runs first (in packed-buffer order), then
// the received rows at their receive-buffer offsets.
int64_t own_rows(const ExpertLayout& layout) {
  int64_t rows = 0;
  for (const ExpertRowRun& run : layout.own_runs) rows += run.rows;
  return rows;
}

at::Tensor rows_of(const at::Tensor& buffer, int64_t offset, int64_t rows) {
  return buffer.defined() ? buffer.narrow(0, offset, rows) : buffer;
}

// Type code kPassThrough: every expert is the identity (the exchange alone, for benchmarks).
constexpr int64_t kPassThrough = -1;

// Autograd functions take defined tensors only: a weight a type lacks (w_up of gelu, all
// of pass-through) travels as an empty placeholder and is dropped again here.
at::Tensor or_placeholder(const at::Tensor& weight) {
  return weight.defined() ? weight : at::empty({0});
}

ExpertWeights weights_of(int64_t type, const at::Tensor& w_in, const at::Tensor& w_up,
                         const at::Tensor& w_out) {
  if (type == kPassThrough) return {ExpertType::kGelu, {}, {}, {}};
  const ExpertType expert_type = ExpertType(type);
  return {expert_type, w_in, expert_type == ExpertType::kSwiglu ? w_up : at::Tensor(), w_out};
}

void run_forward(const ExpertWeights& weights, bool pass_through, int64_t expert,
                 const at::Tensor& x_ND, const at::Tensor& gate_NH, const at::Tensor& up_NH,
                 at::Tensor y_ND) {
  if (pass_through) {
    if (y_ND.data_ptr() != x_ND.data_ptr()) y_ND.copy_(x_ND);
  } else {
    expert_forward(weights, expert, x_ND, gate_NH, up_NH, y_ND);
  }
}

void run_backward(const ExpertWeights& weights, bool pass_through, int64_t expert,
                  const at::Tensor& x_ND, const at::Tensor& gate_NH, const at::Tensor& up_NH,
                  const at::Tensor& grad_y_ND, at::Tensor grad_x_ND, ExpertGrads& grads) {
  if (pass_through) {
    if (grad_x_ND.data_ptr() != grad_y_ND.data_ptr()) grad_x_ND.copy_(grad_y_ND);
  } else {
    expert_backward(weights, expert, x_ND, gate_NH, up_NH, grad_y_ND, grad_x_ND, grads);
  }
}

// The grouped path computes a group of runs (0: the own runs, j + 1: chunk j's) as one
// block, its rows by expert; its pre-activations take the group's rows of the act buffers
// (own rows first, then the received rows at their offsets) in that sorted order.
struct GroupBlock {
  ExpertBlock block;
  bool own;
  int64_t act;  // the block's first row in the pre-activation buffers
};

GroupBlock group_block(const ExpertLayout& layout, int64_t group, const ExpertWeights& weights,
                       const at::Device& device) {
  const bool own = group == 0;
  const int64_t experts = weights.w_in_EDH.size(0);
  GroupBlock g{
      expert_block(own ? layout.own_runs : layout.chunks[size_t(group - 1)].runs, experts, device),
      own, 0};
  if (!own) g.act = own_rows(layout) + g.block.begin;
  return g;
}

std::atomic<int64_t> recomputed_rows{0};

// The pre-activation buffers forward filled, made again with the same GEMMs on the same
// rows in the same blocks (so the same bits): the own runs, then each chunk's received runs.
std::pair<at::Tensor, at::Tensor> recompute_preactivations(const ExpertLayout& layout,
                                                           const ExpertWeights& weights,
                                                           const at::Tensor& x_RD,
                                                           const at::Tensor& received_SD,
                                                           bool grouped) {
  const int64_t own = own_rows(layout);
  at::Tensor gate =
      at::empty({own + layout.received_rows, weights.w_in_EDH.size(2)}, x_RD.options());
  at::Tensor up = weights.type == ExpertType::kSwiglu ? at::empty_like(gate) : at::Tensor();
  recomputed_rows += gate.size(0);
  if (grouped) {
    for (int64_t group = 0; group <= int64_t(layout.chunks.size()); ++group) {
      const GroupBlock g = group_block(layout, group, weights, x_RD.device());
      if (g.block.rows == 0) continue;
      grouped_preactivations(weights, g.block, g.block.gather(g.own ? x_RD : received_SD),
                             rows_of(gate, g.act, g.block.rows), rows_of(up, g.act, g.block.rows));
    }
    return {gate, up};
  }
  int64_t act = 0;
  for (const ExpertRowRun& run : layout.own_runs) {
    expert_preactivations(weights, run.expert, rows_of(x_RD, run.offset, run.rows),
                          rows_of(gate, act, run.rows), rows_of(up, act, run.rows));
    act += run.rows;
  }
  for (const ExchangeChunk& chunk : layout.chunks)
    for (const ExpertRowRun& run : chunk.runs)
      expert_preactivations(weights, run.expert, rows_of(received_SD, run.offset, run.rows),
                            rows_of(gate, own + run.offset, run.rows),
                            rows_of(up, own + run.offset, run.rows));
  return {gate, up};
}

struct RunExperts : public torch::autograd::Function<RunExperts> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w_in,
                            const at::Tensor& w_up, const at::Tensor& w_out, int64_t type,
                            std::vector<int64_t> layout_code, int64_t comm_address,
                            const InFlightWork* while_in_flight, bool grad_enabled, bool grouped,
                            bool recompute) {
    const ExpertLayout layout = decode_layout(layout_code);
    auto* ep = reinterpret_cast<Communicator*>(comm_address);
    const ExpertWeights weights = weights_of(type, w_in, w_up, w_out);
    const bool pass = type == kPassThrough;
    const at::Tensor x_RD = x.contiguous();
    const int64_t d_model = x_RD.size(1), hidden = pass ? 0 : weights.w_in_EDH.size(2),
                  own = own_rows(layout);
    const auto options = x_RD.options();
    at::Tensor y_RD = at::empty({x_RD.size(0), d_model}, options);
    at::Tensor received_SD = at::empty({layout.received_rows, d_model}, options);
    // Pass-through: received rows go back as they came, from the receive buffer itself.
    at::Tensor outputs_SD =
        pass ? received_SD : at::empty({layout.received_rows, d_model}, options);
    at::Tensor gate = at::empty({own + layout.received_rows, hidden}, options);
    at::Tensor up =
        !pass && weights.type == ExpertType::kSwiglu ? at::empty_like(gate) : at::Tensor();

    drive_pipeline(
        layout, ep, {x_RD, received_SD, outputs_SD, y_RD},
        {Phase::kDispatchRows, Phase::kExperts, Phase::kCombineRows},
        [&](const ExpertRowRun& run, bool own_run, int64_t act) {
          if (grouped) return;  // the group's block computes after its last run
          const at::Tensor& in = own_run ? x_RD : received_SD;
          const at::Tensor& out = own_run ? y_RD : outputs_SD;
          run_forward(weights, pass, run.expert, rows_of(in, run.offset, run.rows),
                      rows_of(gate, act, run.rows), rows_of(up, act, run.rows),
                      rows_of(out, run.offset, run.rows));
        },
        *while_in_flight, grad_enabled,
        [&](int64_t group, const std::function<void()>& nudge) {
          if (!grouped) return;
          const GroupBlock g = group_block(layout, group, weights, x_RD.device());
          if (g.block.rows == 0) return;
          at::Tensor y_sorted = at::empty({g.block.rows, d_model}, options);
          grouped_forward(weights, g.block, g.block.gather(g.own ? x_RD : received_SD),
                          rows_of(gate, g.act, g.block.rows), rows_of(up, g.act, g.block.rows),
                          y_sorted, nudge);
          g.block.scatter(g.own ? y_RD : outputs_SD, y_sorted);
        });
    // train.recompute experts: the hidden pre-activations are not kept; backward makes
    // them again from the rows, which it keeps anyway.
    if (recompute) gate = up = at::Tensor();
    ctx->save_for_backward({x_RD, received_SD, gate, up, w_in, w_up, w_out});
    ctx->saved_data["grouped"] = grouped;
    ctx->saved_data["type"] = type;
    ctx->saved_data["layout"] = layout_code;
    ctx->saved_data["comm"] = comm_address;
    ctx->saved_data["label"] = watchdog::current_label();
    return y_RD;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const ExpertLayout layout = decode_layout(ctx->saved_data["layout"].toIntVector());
    auto* ep = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x_RD = saved[0], &received_SD = saved[1];
    at::Tensor gate = saved[2], up = saved[3];
    const int64_t type = ctx->saved_data["type"].toInt();
    const bool pass = type == kPassThrough;
    const ExpertWeights weights = weights_of(type, saved[4], saved[5], saved[6]);
    watchdog::Scope scope(backward_label(ctx->saved_data["label"].toStringRef()));
    const bool grouped = ctx->saved_data["grouped"].toBool();
    if (!pass && !gate.defined()) {
      phase_clock::enter(Phase::kExpertsBwd);
      std::tie(gate, up) = recompute_preactivations(layout, weights, x_RD, received_SD, grouped);
    }
    const at::Tensor grad_y_RD = grads[0].to(x_RD.scalar_type()).contiguous();
    at::Tensor grad_x_RD = at::empty_like(x_RD);
    at::Tensor grad_outputs_SD = at::empty_like(received_SD);
    at::Tensor grad_received_SD = pass ? grad_outputs_SD : at::empty_like(received_SD);
    ExpertGrads weight_grads = pass ? ExpertGrads{} : unwritten_grads(weights);

    drive_pipeline(
        layout, ep, {grad_y_RD, grad_outputs_SD, grad_received_SD, grad_x_RD},
        {Phase::kCombineRowsBwd, Phase::kExpertsBwd, Phase::kDispatchRowsBwd},
        [&](const ExpertRowRun& run, bool own_run, int64_t act) {
          if (grouped) return;
          const at::Tensor& x = own_run ? x_RD : received_SD;
          const at::Tensor& grad_y = own_run ? grad_y_RD : grad_outputs_SD;
          const at::Tensor& grad_x = own_run ? grad_x_RD : grad_received_SD;
          run_backward(weights, pass, run.expert, rows_of(x, run.offset, run.rows),
                       rows_of(gate, act, run.rows), rows_of(up, act, run.rows),
                       rows_of(grad_y, run.offset, run.rows), rows_of(grad_x, run.offset, run.rows),
                       weight_grads);
        },
        {}, false,
        [&](int64_t group, const std::function<void()>& nudge) {
          if (!grouped) return;
          const GroupBlock g = group_block(layout, group, weights, x_RD.device());
          if (g.block.rows == 0) return;
          const at::Tensor grad_x_sorted = grouped_backward(
              weights, g.block, g.block.gather(g.own ? x_RD : received_SD),
              rows_of(gate, g.act, g.block.rows), rows_of(up, g.act, g.block.rows),
              g.block.gather(g.own ? grad_y_RD : grad_outputs_SD), weight_grads, nudge);
          g.block.scatter(g.own ? grad_x_RD : grad_received_SD, grad_x_sorted);
        });
    if (!pass) zero_unwritten(weight_grads);
    phase_clock::enter(Phase::kSortPackRouteBwd);
    return {grad_x_RD,    weight_grads.w_in_EDH, weight_grads.w_up_EDH, weight_grads.w_out_EHD,
            at::Tensor(), at::Tensor(),          at::Tensor(),          at::Tensor(),
            at::Tensor(), at::Tensor(),          at::Tensor()};
  }
};

}  // namespace

ExpertLayout expert_parallel_layout(const std::vector<int64_t>& send_counts_PL,
                                    const std::vector<int64_t>& recv_counts_PL, int rank, int ranks,
                                    int64_t chunks) {
  const int64_t local = int64_t(send_counts_PL.size()) / ranks;
  TRIAGE_ASSERT(local > 0 && int64_t(send_counts_PL.size()) == local * ranks &&
                    recv_counts_PL.size() == send_counts_PL.size(),
                "counts for " << send_counts_PL.size() << " experts over " << ranks << " ranks");
  chunks = std::clamp<int64_t>(chunks, 1, local);
  std::vector<int64_t> packed_offset(send_counts_PL.size() + 1, 0);
  for (size_t i = 0; i < send_counts_PL.size(); ++i)
    packed_offset[i + 1] = packed_offset[i] + send_counts_PL[i];

  ExpertLayout layout;
  for (int64_t l = 0; l < local; ++l) {
    const int64_t i = rank * local + l;
    TRIAGE_ASSERT(send_counts_PL[i] == recv_counts_PL[i],
                  "own expert " << l << ": " << send_counts_PL[i] << " rows packed, "
                                << recv_counts_PL[i] << " expected");
    if (send_counts_PL[i] > 0) layout.own_runs.push_back({l, packed_offset[i], send_counts_PL[i]});
  }
  if (ranks == 1) return layout;
  for (int64_t j = 0; j < chunks; ++j) {
    // Chunk j: local experts [first, last) of every rank, near-equal groups.
    const int64_t first = j * local / chunks, last = (j + 1) * local / chunks;
    ExchangeChunk chunk;
    chunk.send.resize(size_t(ranks));
    chunk.recv.resize(size_t(ranks));
    for (int p = 0; p < ranks; ++p) {
      if (p == rank) continue;
      const int64_t begin = packed_offset[p * local + first], end = packed_offset[p * local + last];
      chunk.send[p] = {begin, end - begin};
      chunk.recv[p].offset = layout.received_rows;
      for (int64_t l = first; l < last; ++l) {
        const int64_t rows = recv_counts_PL[p * local + l];
        if (rows > 0) chunk.runs.push_back({l, layout.received_rows, rows});
        layout.received_rows += rows;
      }
      chunk.recv[p].rows = layout.received_rows - chunk.recv[p].offset;
    }
    layout.chunks.push_back(std::move(chunk));
  }
  return layout;
}

at::Tensor exchange_rows(const at::Tensor& x_RD, const ExpertLayout& layout, Communicator& ep) {
  const at::Tensor none = or_placeholder({});
  const InFlightWork no_work;
  return RunExperts::apply(x_RD, none, none, none, kPassThrough, encode_layout(layout, ep.size()),
                           reinterpret_cast<int64_t>(&ep), &no_work, false, false, false);
}

int64_t recomputed_expert_rows() { return recomputed_rows.load(); }
void count_recomputed_expert_rows(int64_t rows) { recomputed_rows += rows; }

at::Tensor run_experts(const at::Tensor& x_RD, const ExpertWeights& weights,
                       const ExpertLayout& layout, Communicator* ep,
                       const InFlightWork& while_in_flight, bool grouped, bool recompute) {
  TRIAGE_ASSERT(ep || layout.chunks.empty(), "an exchange needs a communicator");
  // The rows come in the dtype the experts compute in (MoeLayer casts them under autocast,
  // before they travel), and `weights` in the same.
  return RunExperts::apply(x_RD, weights.w_in_EDH, or_placeholder(weights.w_up_EDH),
                           weights.w_out_EHD, int64_t(weights.type),
                           encode_layout(layout, ep ? ep->size() : 1),
                           reinterpret_cast<int64_t>(ep), &while_in_flight,
                           c10::GradMode::is_enabled(), grouped, recompute);
}

}  // namespace triage
