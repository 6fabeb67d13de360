// All local experts on a block of rows with one grouped GEMM per matrix; see the header.
#include "moe/grouped_math.h"

#include <algorithm>

#include "common/error.h"

namespace triage {
namespace {

// Host to device through pinned memory, without blocking: a pageable copy would wait for
// all the device's earlier work.
at::Tensor to_device(const at::Tensor& host, const at::Device& device) {
  return device.is_cuda() ? host.pin_memory().to(device, /*non_blocking=*/true) : host;
}

// The stacked matrices in the rows' dtype (a no-op unless the rows are reduced precision).
at::Tensor matrices(const at::Tensor& stacked, const at::Tensor& rows) {
  return stacked.to(rows.scalar_type());
}

at::Tensor gemm(const at::Tensor& x_NA, const at::Tensor& w_EAB, const at::Tensor& ends) {
  return at::_grouped_mm(x_NA, w_EAB, ends);
}

// Every expert's a^T b over its rows (E x A x B), zero for the block's idle experts.
at::Tensor outer(const at::Tensor& a_NA, const at::Tensor& b_NB, const ExpertBlock& block) {
  at::Tensor out = at::_grouped_mm(a_NA.t(), b_NB, block.ends);
  for (int64_t e : block.idle_experts) out.select(0, e).zero_();
  return out;
}

void add_block(at::Tensor grad, const at::Tensor& share, bool first) {
  first ? grad.copy_(share) : grad.add_(share);
}

}  // namespace

at::Tensor ExpertBlock::gather(const at::Tensor& buffer) const {
  return order.defined() ? buffer.index_select(0, order) : buffer.narrow(0, begin, rows);
}

void ExpertBlock::scatter(at::Tensor buffer, const at::Tensor& sorted) const {
  if (order.defined())
    buffer.index_copy_(0, order, sorted);
  else
    buffer.narrow(0, begin, rows).copy_(sorted);
}

ExpertBlock expert_block(const std::vector<ExpertRowRun>& runs, int64_t experts,
                         const at::Device& device) {
  ExpertBlock block;
  if (runs.empty()) {
    block.ends = to_device(at::zeros({experts}, at::kInt), device);
    for (int64_t e = 0; e < experts; ++e) block.idle_experts.push_back(e);
    return block;
  }
  block.begin = runs.front().offset;
  bool in_place = true;
  for (size_t i = 0; i < runs.size(); ++i) {
    TRIAGE_ASSERT(runs[i].expert >= 0 && runs[i].expert < experts,
                  "run for expert " << runs[i].expert << " of " << experts);
    block.begin = std::min(block.begin, runs[i].offset);
    block.rows += runs[i].rows;
    if (i > 0)
      in_place = in_place && runs[i].expert > runs[i - 1].expert &&
                 runs[i].offset == runs[i - 1].offset + runs[i - 1].rows;
  }
  std::vector<int32_t> ends(size_t(experts), 0);
  for (const ExpertRowRun& run : runs) ends[size_t(run.expert)] += int32_t(run.rows);
  for (int64_t e = 0; e < experts; ++e)
    if (ends[size_t(e)] == 0) block.idle_experts.push_back(e);
  for (size_t e = 1; e < ends.size(); ++e) ends[e] += ends[e - 1];
  block.ends = to_device(at::tensor(ends, at::kInt), device);
  if (in_place) return block;
  std::vector<int64_t> order;
  order.reserve(size_t(block.rows));
  for (int64_t e = 0; e < experts; ++e)
    for (const ExpertRowRun& run : runs)
      if (run.expert == e)
        for (int64_t r = run.offset; r < run.offset + run.rows; ++r) order.push_back(r);
  block.order = to_device(at::tensor(order, at::kLong), device);
  return block;
}

void grouped_preactivations(const ExpertWeights& weights, const ExpertBlock& block,
                            const at::Tensor& x_ND, at::Tensor gate_NH, at::Tensor up_NH,
                            const std::function<void()>& between) {
  auto nudge = [&] {
    if (between) between();
  };
  gate_NH.copy_(gemm(x_ND, matrices(weights.w_in_EDH, x_ND), block.ends));
  nudge();
  if (weights.type == ExpertType::kSwiglu) {
    up_NH.copy_(gemm(x_ND, matrices(weights.w_up_EDH, x_ND), block.ends));
    nudge();
  }
}

void grouped_forward(const ExpertWeights& weights, const ExpertBlock& block, const at::Tensor& x_ND,
                     at::Tensor gate_NH, at::Tensor up_NH, at::Tensor y_ND,
                     const std::function<void()>& between) {
  grouped_preactivations(weights, block, x_ND, gate_NH, up_NH, between);
  y_ND.copy_(gemm(expert_hidden(weights.type, gate_NH, up_NH), matrices(weights.w_out_EHD, x_ND),
                  block.ends));
}

at::Tensor grouped_backward(const ExpertWeights& weights, const ExpertBlock& block,
                            const at::Tensor& x_ND, const at::Tensor& gate_NH,
                            const at::Tensor& up_NH, const at::Tensor& grad_y_ND,
                            ExpertGrads& grads, const std::function<void()>& between) {
  auto nudge = [&] {
    if (between) between();
  };
  const bool first =
      std::none_of(grads.written.begin(), grads.written.end(), [](bool w) { return w; });
  grads.written.assign(grads.written.size(), true);  // an expert without rows adds zeros
  const at::Tensor grad_hidden_NH =
      gemm(grad_y_ND, matrices(weights.w_out_EHD, x_ND).transpose(1, 2), block.ends);
  nudge();
  const at::Tensor w_in_EHD = matrices(weights.w_in_EDH, x_ND).transpose(1, 2);
  if (weights.type == ExpertType::kGelu) {
    add_block(grads.w_out_EHD, outer(at::gelu(gate_NH), grad_y_ND, block), first);
    nudge();
    const at::Tensor grad_gate_NH = at::gelu_backward(grad_hidden_NH, gate_NH);
    add_block(grads.w_in_EDH, outer(x_ND, grad_gate_NH, block), first);
    nudge();
    return gemm(grad_gate_NH, w_in_EHD, block.ends);
  }
  const at::Tensor silu_NH = at::silu(gate_NH);
  add_block(grads.w_out_EHD, outer(silu_NH * up_NH, grad_y_ND, block), first);
  nudge();
  const at::Tensor grad_up_NH = grad_hidden_NH * silu_NH;
  const at::Tensor grad_gate_NH = at::silu_backward(grad_hidden_NH * up_NH, gate_NH);
  add_block(grads.w_in_EDH, outer(x_ND, grad_gate_NH, block), first);
  nudge();
  add_block(grads.w_up_EDH, outer(x_ND, grad_up_NH, block), first);
  nudge();
  at::Tensor grad_x_ND = gemm(grad_gate_NH, w_in_EHD, block.ends);
  nudge();
  return grad_x_ND.add_(
      gemm(grad_up_NH, matrices(weights.w_up_EDH, x_ND).transpose(1, 2), block.ends));
}

}  // namespace triage
