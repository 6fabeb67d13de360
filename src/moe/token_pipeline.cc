// The per_rank exchange pipelined in chunks of units; see the header.
#include "moe/token_pipeline.h"

#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include "common/error.h"
#include "moe/count_ids.h"
#include "moe/grouped_math.h"
#include "moe/pipeline_schedule.h"
#include "parallel/phase_clock.h"
#include "parallel/watchdog.h"

namespace triage {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Groups of rows: 0 = this rank's own units, j + 1 = chunk j. Rows are sorted by group,
// then local expert; the rows_by_slot tensor lists each group's rows by their place among
// their unit's choices (slot s holds every unit's (s+1)-th choice, rows_in_slot counts
// them), so a unit's sum is formed slot by slot, each slot touching a unit at most once.
struct TokenPlan {
  ExpertLayout layout;                // runs at their row offsets; chunks carry unit spans
  int64_t slots_per_group = 0;        // S
  std::vector<int64_t> rows_in_slot;  // G * S
  RowSpan own_sent, own_received;     // this rank's own units in x_UD and the receive buffer
};

// As one flat list of integers (saved_data holds IValues): the layout's length and code,
// then the own spans, S and the slot counts.
std::vector<int64_t> encode(const TokenPlan& plan, int ranks) {
  const std::vector<int64_t> layout = encode_layout(plan.layout, ranks);
  std::vector<int64_t> code = {int64_t(layout.size())};
  code.insert(code.end(), layout.begin(), layout.end());
  code.insert(code.end(), {plan.own_sent.offset, plan.own_received.offset, plan.own_sent.rows,
                           plan.slots_per_group});
  code.insert(code.end(), plan.rows_in_slot.begin(), plan.rows_in_slot.end());
  return code;
}

TokenPlan decode(const std::vector<int64_t>& code) {
  const auto layout_end = code.begin() + 1 + std::ptrdiff_t(code.at(0));
  TokenPlan plan;
  plan.layout = decode_layout({code.begin() + 1, layout_end});
  auto at = layout_end;
  plan.own_sent.offset = *at++;
  plan.own_received.offset = *at++;
  plan.own_sent.rows = plan.own_received.rows = *at++;
  plan.slots_per_group = *at++;
  plan.rows_in_slot.assign(at, code.end());
  return plan;
}

std::vector<int64_t> exclusive_sum(const std::vector<int64_t>& counts) {
  std::vector<int64_t> offsets(counts.size(), 0);
  for (size_t i = 1; i < counts.size(); ++i) offsets[i] = offsets[i - 1] + counts[i - 1];
  return offsets;
}

// Chunk j's share of n rows starting at `offset`: [j n / C, (j+1) n / C).
RowSpan share(int64_t offset, int64_t n, int64_t j, int64_t chunks) {
  const int64_t first = j * n / chunks, last = (j + 1) * n / chunks;
  return {offset + first, last - first};
}

at::Tensor or_placeholder(const at::Tensor& t) { return t.defined() ? t : at::empty({0}); }

// One group's unit sums into sums_VD: for each unit, the sum of rows_of(its choices' rows),
// slot by slot (the first slot writes, later ones add; a slot holds a unit at most once, so
// the order is fixed on any device). Group 0's sums are this rank's own units' results:
// they are copied home into results_UD (the others travel there).
void sum_units(const TokenPlan& plan, const at::Tensor& rows_by_slot, const at::Tensor& unit_R,
               int64_t group, const std::function<at::Tensor(const at::Tensor&)>& rows_of,
               at::Tensor& sums_VD, at::Tensor& results_UD) {
  const int64_t S = plan.slots_per_group;
  int64_t begin = 0;
  for (int64_t i = 0; i < group * S; ++i) begin += plan.rows_in_slot[size_t(i)];
  for (int64_t s = 0; s < S; ++s) {
    const int64_t n = plan.rows_in_slot[size_t(group * S + s)];
    if (n == 0) continue;
    const at::Tensor rows = rows_by_slot.narrow(0, begin, n);
    const at::Tensor units = unit_R.index_select(0, rows);
    s == 0 ? sums_VD.index_copy_(0, units, rows_of(rows))
           : sums_VD.index_add_(0, units, rows_of(rows));
    begin += n;
  }
  if (group == 0)
    results_UD.narrow(0, plan.own_sent.offset, plan.own_sent.rows)
        .copy_(sums_VD.narrow(0, plan.own_received.offset, plan.own_received.rows));
}

// The grouped path computes a group's rows (0: own units, j + 1: chunk j) as one block; they
// are contiguous and by local expert already, so the block reads them in place.
ExpertBlock group_block(const TokenPlan& plan, int64_t group, const ExpertWeights& weights,
                        const at::Device& device) {
  const ExpertLayout& layout = plan.layout;
  ExpertBlock block =
      expert_block(group == 0 ? layout.own_runs : layout.chunks[size_t(group - 1)].runs,
                   weights.w_in_EDH.size(0), device);
  TRIAGE_ASSERT(!block.order.defined(), "group " << group << "'s rows are not by expert");
  return block;
}

// The block's rows of a buffer laid out like the computed rows (undefined stays undefined).
at::Tensor rows_in(const ExpertBlock& block, const at::Tensor& buffer) {
  return buffer.defined() ? buffer.narrow(0, block.begin, block.rows) : buffer;
}

struct TokenPipeline : public torch::autograd::Function<TokenPipeline> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight_R,
                            const at::Tensor& w_in, const at::Tensor& w_up, const at::Tensor& w_out,
                            const at::Tensor& unit_R, const at::Tensor& rows_by_slot,
                            const at::Tensor& scale, int64_t type, std::vector<int64_t> plan_code,
                            int64_t comm_address, const InFlightWork* while_in_flight,
                            bool grad_enabled, bool grouped, bool recompute) {
    const TokenPlan plan = decode(plan_code);
    auto* ep = reinterpret_cast<Communicator*>(comm_address);
    const ExpertWeights weights{ExpertType(type), w_in,
                                ExpertType(type) == ExpertType::kSwiglu ? w_up : at::Tensor(),
                                w_out};
    const at::Tensor x_UD = x.contiguous();
    const int64_t rows = unit_R.size(0), width = x_UD.size(1);
    const auto options = x_UD.options();
    at::Tensor x_VD = at::empty({plan.layout.received_rows, width}, options);
    x_VD.narrow(0, plan.own_received.offset, plan.own_received.rows)
        .copy_(x_UD.narrow(0, plan.own_sent.offset, plan.own_sent.rows));
    at::Tensor x_RD = at::empty({rows, width}, options), out_RD = at::empty_like(x_RD);
    at::Tensor gate = at::empty({rows, w_in.size(2)}, options);
    at::Tensor up = weights.type == ExpertType::kSwiglu ? at::empty_like(gate) : at::Tensor();
    at::Tensor y_VD = at::empty_like(x_VD), y_UD = at::empty_like(x_UD);
    const bool scaled = scale.numel() > 0;

    auto compute = [&](const ExpertRowRun& run, bool, int64_t) {
      auto slice = [&](const at::Tensor& t) { return t.narrow(0, run.offset, run.rows); };
      at::Tensor x_ND = slice(x_RD);
      at::index_select_out(x_ND, x_VD, 0, slice(unit_R));
      if (grouped) return;  // the group's block computes after its last run
      at::Tensor out_ND = slice(out_RD);
      expert_forward(weights, run.expert, x_ND, slice(gate), up.defined() ? slice(up) : up, out_ND);
      if (scaled) out_ND.mul_(slice(scale));
    };
    auto sum_group = [&](int64_t group, const std::function<void()>& nudge) {
      const ExpertBlock block =
          grouped ? group_block(plan, group, weights, x_UD.device()) : ExpertBlock{};
      if (block.rows > 0) {
        auto span = [&](const at::Tensor& t) { return rows_in(block, t); };
        grouped_forward(weights, block, span(x_RD), span(gate), span(up), span(out_RD), nudge);
        if (scaled) span(out_RD).mul_(span(scale));
      }
      sum_units(
          plan, rows_by_slot, unit_R, group,
          [&](const at::Tensor& r) {
            return out_RD.index_select(0, r) * weight_R.index_select(0, r).unsqueeze(1);
          },
          y_VD, y_UD);
    };
    drive_pipeline(plan.layout, ep, {x_UD, x_VD, y_VD, y_UD},
                   {Phase::kDispatchRows, Phase::kExperts, Phase::kCombineRows}, compute,
                   *while_in_flight, grad_enabled, sum_group);
    // train.recompute experts: backward makes the pre-activations again from x_RD.
    if (recompute) gate = up = at::Tensor();
    ctx->save_for_backward({x_RD, or_placeholder(gate), or_placeholder(up), out_RD, weight_R,
                            unit_R, rows_by_slot, scale, w_in, w_up, w_out});
    ctx->saved_data["type"] = type;
    ctx->saved_data["grouped"] = grouped;
    ctx->saved_data["plan"] = plan_code;
    ctx->saved_data["comm"] = comm_address;
    ctx->saved_data["label"] = watchdog::current_label();
    return y_UD;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const TokenPlan plan = decode(ctx->saved_data["plan"].toIntVector());
    auto* ep = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x_RD = saved[0], &out_RD = saved[3], &weight_R = saved[4], &unit_R = saved[5],
                     &rows_by_slot = saved[6], &scale = saved[7];
    at::Tensor gate = saved[1], up = saved[2].numel() > 0 ? saved[2] : at::Tensor();
    const auto type = ExpertType(ctx->saved_data["type"].toInt());
    const ExpertWeights weights{type, saved[8],
                                type == ExpertType::kSwiglu ? saved[9] : at::Tensor(), saved[10]};
    watchdog::Scope scope(backward_label(ctx->saved_data["label"].toStringRef()));
    if (gate.numel() == 0 && x_RD.size(0) > 0) {  // not kept: made again, run by run or by block
      phase_clock::enter(Phase::kExpertsBwd);
      gate = at::empty({x_RD.size(0), weights.w_in_EDH.size(2)}, x_RD.options());
      up = type == ExpertType::kSwiglu ? at::empty_like(gate) : at::Tensor();
      count_recomputed_expert_rows(x_RD.size(0));
      const bool grouped = ctx->saved_data["grouped"].toBool();
      for (int64_t group = 0; group <= int64_t(plan.layout.chunks.size()); ++group) {
        const std::vector<ExpertRowRun>& runs =
            group == 0 ? plan.layout.own_runs : plan.layout.chunks[size_t(group - 1)].runs;
        if (grouped) {
          const ExpertBlock block = group_block(plan, group, weights, x_RD.device());
          if (block.rows == 0) continue;
          grouped_preactivations(weights, block, rows_in(block, x_RD), rows_in(block, gate),
                                 rows_in(block, up));
          continue;
        }
        for (const ExpertRowRun& run : runs) {
          auto slice = [&](const at::Tensor& t) {
            return t.defined() ? t.narrow(0, run.offset, run.rows) : t;
          };
          expert_preactivations(weights, run.expert, slice(x_RD), slice(gate), slice(up));
        }
      }
    }
    const at::Tensor grad_y_UD = grads[0].to(x_RD.scalar_type()).contiguous();
    at::Tensor grad_y_VD = at::empty({plan.layout.received_rows, x_RD.size(1)}, x_RD.options());
    grad_y_VD.narrow(0, plan.own_received.offset, plan.own_received.rows)
        .copy_(grad_y_UD.narrow(0, plan.own_sent.offset, plan.own_sent.rows));
    at::Tensor grad_x_RD = at::empty_like(x_RD), grad_x_VD = at::empty_like(grad_y_VD),
               grad_x_UD = at::empty_like(grad_y_UD), grad_weight_R = at::empty_like(weight_R);
    ExpertGrads weight_grads = unwritten_grads(weights);
    const bool scaled = scale.numel() > 0, grouped = ctx->saved_data["grouped"].toBool();
    // The grouped path keeps the runs' output gradients for its block.
    at::Tensor grad_out_RD = grouped ? at::empty_like(x_RD) : at::Tensor();

    auto compute = [&](const ExpertRowRun& run, bool, int64_t) {
      auto slice = [&](const at::Tensor& t) { return t.narrow(0, run.offset, run.rows); };
      const at::Tensor grad_sum_ND = grad_y_VD.index_select(0, slice(unit_R));
      slice(grad_weight_R).copy_((grad_sum_ND * slice(out_RD)).sum(1));
      at::Tensor grad_out_ND = grad_sum_ND * slice(weight_R).unsqueeze(1);
      if (scaled) grad_out_ND.mul_(slice(scale));
      if (grouped) {
        slice(grad_out_RD).copy_(grad_out_ND);
        return;
      }
      expert_backward(weights, run.expert, slice(x_RD), slice(gate), up.defined() ? slice(up) : up,
                      grad_out_ND, slice(grad_x_RD), weight_grads);
    };
    auto sum_group = [&](int64_t group, const std::function<void()>& nudge) {
      const ExpertBlock block =
          grouped ? group_block(plan, group, weights, x_RD.device()) : ExpertBlock{};
      if (block.rows > 0) {
        auto span = [&](const at::Tensor& t) { return rows_in(block, t); };
        span(grad_x_RD).copy_(grouped_backward(weights, block, span(x_RD), span(gate), span(up),
                                               span(grad_out_RD), weight_grads, nudge));
      }
      sum_units(
          plan, rows_by_slot, unit_R, group,
          [&](const at::Tensor& r) { return grad_x_RD.index_select(0, r); }, grad_x_VD, grad_x_UD);
    };
    drive_pipeline(plan.layout, ep, {grad_y_UD, grad_y_VD, grad_x_VD, grad_x_UD},
                   {Phase::kCombineRowsBwd, Phase::kExpertsBwd, Phase::kDispatchRowsBwd}, compute,
                   {}, false, sum_group);
    zero_unwritten(weight_grads);
    phase_clock::enter(Phase::kSortPackRouteBwd);
    return {grad_x_UD,
            grad_weight_R,
            weight_grads.w_in_EDH,
            weight_grads.w_up_EDH,
            weight_grads.w_out_EHD,
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

at::Tensor run_token_pipeline(const at::Tensor& x_UD, const ReceivedChoices& received,
                              const ExpertWeights& weights, Communicator& ep, int64_t chunks,
                              bool grouped, const RowScale& row_scale,
                              const InFlightWork& while_in_flight, bool recompute) {
  const int64_t ranks = ep.size(), me = ep.rank(), local_experts = weights.w_in_EDH.size(0);
  const int64_t pieces = ranks > 1 ? std::max<int64_t>(chunks, 1) : 0, groups = pieces + 1;
  const std::vector<int64_t> sent_before = exclusive_sum(received.send_units);
  const std::vector<int64_t> received_before = exclusive_sum(received.recv_units);
  TokenPlan plan;
  ExpertLayout& layout = plan.layout;
  for (int64_t p = 0; p < ranks; ++p) layout.received_rows += received.recv_units[size_t(p)];
  plan.own_sent = {sent_before[size_t(me)], received.send_units[size_t(me)]};
  plan.own_received = {received_before[size_t(me)], received.recv_units[size_t(me)]};
  TRIAGE_ASSERT(plan.own_sent.rows == plan.own_received.rows,
                plan.own_sent.rows << " own units sent, " << plan.own_received.rows << " received");

  // Each received unit's group, and the chunks' spans, on the host (from the counts alone).
  std::vector<int64_t> group_of_unit(size_t(layout.received_rows), 0);
  layout.chunks.resize(size_t(pieces));
  for (int64_t j = 0; j < pieces; ++j) {
    ExchangeChunk& chunk = layout.chunks[size_t(j)];
    for (int64_t p = 0; p < ranks; ++p) {
      const size_t i = size_t(p);
      const bool own = p == me;
      chunk.send.push_back(own ? RowSpan{sent_before[i], 0}
                               : share(sent_before[i], received.send_units[i], j, pieces));
      chunk.recv.push_back(own ? RowSpan{received_before[i], 0}
                               : share(received_before[i], received.recv_units[i], j, pieces));
      for (int64_t u = chunk.recv.back().offset;
           u < chunk.recv.back().offset + chunk.recv.back().rows; ++u)
        group_of_unit[size_t(u)] = j + 1;
    }
  }

  // Rows by (group, local expert), stable; each choice's slot among its unit's choices.
  const at::TensorOptions index = received.unit_Q.options();
  const at::Tensor group_Q = at::tensor(group_of_unit, at::TensorOptions().dtype(at::kLong))
                                 .to(index.device())
                                 .index_select(0, received.unit_Q);
  const at::Tensor choice_of_row_R =
      std::get<1>(at::sort(group_Q * local_experts + received.local_expert_Q, true, 0, false));
  const int64_t choices = received.unit_Q.size(0);
  const at::Tensor by_unit = std::get<1>(at::sort(received.unit_Q, true, 0, false));
  const at::Tensor per_unit = count_ids(received.unit_Q, layout.received_rows);
  const at::Tensor first_of_unit = per_unit.cumsum(0) - per_unit;
  const at::Tensor slot_Q = at::empty_like(by_unit).index_put_(
      {by_unit}, at::arange(choices, index) -
                     first_of_unit.index_select(0, received.unit_Q.index_select(0, by_unit)));
  plan.slots_per_group = local_experts;  // a unit holds at most one choice per local expert
  const at::Tensor slot_key_Q = group_Q * plan.slots_per_group + slot_Q;
  const at::Tensor row_of_choice_Q =
      at::empty_like(choice_of_row_R).index_put_({choice_of_row_R}, at::arange(choices, index));
  const at::Tensor rows_by_slot =
      row_of_choice_Q.index_select(0, std::get<1>(at::sort(slot_key_Q, true, 0, false)));
  // One read back to the host for both sets of counts.
  const int64_t expert_keys = groups * local_experts, slot_keys = groups * plan.slots_per_group;
  const at::Tensor counts =
      count_ids(
          at::cat({group_Q * local_experts + received.local_expert_Q, slot_key_Q + expert_keys}),
          expert_keys + slot_keys)
          .to(at::kCPU);
  const int64_t* count = counts.data_ptr<int64_t>();
  int64_t offset = 0;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t l = 0; l < local_experts; ++l) {
      const int64_t rows = count[g * local_experts + l];
      if (rows > 0)
        (g == 0 ? layout.own_runs : layout.chunks[size_t(g - 1)].runs).push_back({l, offset, rows});
      offset += rows;
    }
  plan.rows_in_slot.assign(count + expert_keys, count + expert_keys + slot_keys);

  const at::Tensor unit_R = received.unit_Q.index_select(0, choice_of_row_R);
  const at::Tensor weight_R =
      received.weight_Q.reshape({-1}).index_select(0, choice_of_row_R).to(x_UD.scalar_type());
  const at::Tensor scale = row_scale ? row_scale(choice_of_row_R).to(x_UD.scalar_type())
                                     : at::empty({0}, x_UD.options());
  return TokenPipeline::apply(x_UD, weight_R, weights.w_in_EDH, or_placeholder(weights.w_up_EDH),
                              weights.w_out_EHD, unit_R, rows_by_slot, scale, int64_t(weights.type),
                              encode(plan, int(ranks)), reinterpret_cast<int64_t>(&ep),
                              &while_in_flight, c10::GradMode::is_enabled(), grouped, recompute);
}

}  // namespace triage
