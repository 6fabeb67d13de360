// Token <-> expert order permutation. The only host sync is reading the per-expert counts,
// and it is the only one of an MoE layer forward on a GPU: the statistics that need other
// device values on the host (the receive bound's drops, the real-token count under
// sequence routing) ride in the same copy. None in backward.
#include "moe/permute.h"

#include "moe/count_ids.h"

#include <torch/csrc/autograd/custom_function.h>

namespace triage {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Every token's kept rows summed back into the token: an embedding bag over the rows (one
// pass, no per-row scatter).
at::Tensor sum_rows_per_token(const at::Tensor& rows_RD, const ExpertOrder& order) {
  return std::get<0>(at::embedding_bag(rows_RD, order.row_of_kept_A, order.kept_offsets_T,
                                       /*scale_grad_by_freq=*/false, /*mode=sum*/ 0));
}

ExpertOrder order_from(AutogradContext* ctx) {
  const variable_list saved = ctx->get_saved_variables();
  ExpertOrder order;
  order.token_of_row_R = saved[0];
  order.row_of_kept_A = saved[1];
  order.kept_offsets_T = saved[2];
  return order;
}

void save_order(AutogradContext* ctx, const ExpertOrder& order, std::vector<at::Tensor> more = {}) {
  std::vector<at::Tensor> saved = {order.token_of_row_R, order.row_of_kept_A, order.kept_offsets_T};
  saved.insert(saved.end(), more.begin(), more.end());
  ctx->save_for_backward(saved);
}

// Packing and combining are each other's transpose: the backward of the gather is the
// per-token sum, and the backward of the weighted sum is a gather, scaled. LibTorch's own
// backwards of index_select and embedding_bag add row by row (measured at 2-4x these), and
// its embedding() gathers rows at copy speed where index_select takes 2.5x as long.
struct GatherRows : public torch::autograd::Function<GatherRows> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_TD,
                            const at::Tensor& token_of_row_R, const at::Tensor& row_of_kept_A,
                            const at::Tensor& kept_offsets_T) {
    save_order(ctx, {{}, token_of_row_R, {}, row_of_kept_A, kept_offsets_T});
    return at::embedding(x_TD, token_of_row_R);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor grad_x_TD = sum_rows_per_token(grads[0].contiguous(), order_from(ctx));
    return {grad_x_TD, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Weights per kept assignment in token order (the embedding bag's per-sample weights).
struct CombineRows : public torch::autograd::Function<CombineRows> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y_RD,
                            const at::Tensor& weight_A, const at::Tensor& token_of_row_R,
                            const at::Tensor& row_of_kept_A, const at::Tensor& kept_offsets_T) {
    auto [y_TD, offset2bag, bag_size, max_indices] =
        at::embedding_bag(y_RD, row_of_kept_A, kept_offsets_T, /*scale_grad_by_freq=*/false,
                          /*mode=sum*/ 0, /*sparse=*/false, weight_A);
    save_order(ctx, {{}, token_of_row_R, {}, row_of_kept_A, kept_offsets_T},
               {y_RD, weight_A, offset2bag});
    return y_TD;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const ExpertOrder order = order_from(ctx);
    const at::Tensor &y_RD = saved[3], &weight_A = saved[4], &offset2bag = saved[5];
    const at::Tensor grad_TD = grads[0].contiguous();
    // Row r's gradient: its token's, times its weight (the weights in row order).
    at::Tensor grad_RD = at::embedding(grad_TD, order.token_of_row_R);
    const at::Tensor weight_R =
        at::empty_like(weight_A).index_copy_(0, order.row_of_kept_A, weight_A);
    grad_RD.mul_(weight_R.unsqueeze(1));
    // A weight's gradient: <its token's gradient, its row>, LibTorch's kernel for exactly this.
    at::Tensor grad_weight_A;
    if (ctx->needs_input_grad(1))
      grad_weight_A = at::_embedding_bag_per_sample_weights_backward(
          grad_TD, y_RD, order.row_of_kept_A, order.kept_offsets_T, offset2bag, 0);
    return {grad_RD, grad_weight_A, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

ExpertOrder sort_by_expert(const at::Tensor& experts_TK, const at::Tensor& keep_TK,
                           int64_t num_experts, const at::Tensor& extra_counts) {
  const int64_t top_k = experts_TK.size(1);
  // Dropped assignments go to an extra bin past the last expert, so one stable sort of all
  // assignments puts the kept ones first, by expert, in token order within each.
  const at::Tensor keep_A = keep_TK.reshape({-1});
  const at::Tensor bin_A =
      at::where(keep_A, experts_TK.reshape({-1}), at::full({}, num_experts, experts_TK.options()));
  // The one device-to-host sync: the expert slice boundaries drive the per-expert matmuls
  // and the exchange's counts. The caller's extra counts come along (after the drop bin).
  at::Tensor counts = count_ids(bin_A, num_experts + 1);
  if (extra_counts.defined()) counts = at::cat({counts, extra_counts.reshape({-1}).to(at::kLong)});
  counts = counts.to(at::kCPU);
  const int64_t* host = counts.data_ptr<int64_t>();
  ExpertOrder result;
  result.tokens_per_expert.assign(host, host + num_experts);
  result.extra_counts.assign(host + num_experts + 1, host + counts.numel());
  int64_t kept = 0;
  for (int64_t n : result.tokens_per_expert) kept += n;

  const at::Tensor by_bin = std::get<1>(at::sort(bin_A, /*stable=*/true, 0, false));
  result.assignment_of_row_R = by_bin.narrow(0, 0, kept);
  result.token_of_row_R = at::div(result.assignment_of_row_R, top_k, "floor");
  // Row of the j-th kept assignment in token order: j = kept assignments before it.
  const at::Tensor kept_index_A = keep_A.to(at::kLong).cumsum(0) - 1;
  const at::Tensor rows = at::arange(kept, experts_TK.options());
  result.row_of_kept_A =
      at::empty({kept}, experts_TK.options())
          .index_put_({kept_index_A.index_select(0, result.assignment_of_row_R)}, rows);
  const at::Tensor kept_per_token = keep_TK.sum(1);
  result.kept_offsets_T = kept_per_token.cumsum(0) - kept_per_token;
  return result;
}

at::Tensor gather_rows(const at::Tensor& x_TD, const ExpertOrder& order) {
  return GatherRows::apply(x_TD, order.token_of_row_R, order.row_of_kept_A, order.kept_offsets_T);
}

at::Tensor combine_rows(const at::Tensor& y_RD, const at::Tensor& weights_TK,
                        const ExpertOrder& order) {
  // Each kept assignment's gate weight in token order, in the rows' dtype (bf16 expert
  // outputs under autocast, gates in fp32); differentiable, so the router learns from it.
  const at::Tensor kept_A = order.assignment_of_row_R.index_select(0, order.row_of_kept_A);
  const at::Tensor weight_A =
      weights_TK.reshape({-1}).index_select(0, kept_A).to(y_RD.scalar_type());
  return CombineRows::apply(y_RD, weight_A, order.token_of_row_R, order.row_of_kept_A,
                            order.kept_offsets_T);
}

}  // namespace triage
