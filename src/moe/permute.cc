// Token <-> expert order permutation. The only host sync is reading the per-expert counts.
#include "moe/permute.h"

namespace triage {

ExpertOrder sort_by_expert(const at::Tensor& experts_TK, const at::Tensor& keep_TK,
                           int64_t num_experts) {
  const int64_t top_k = experts_TK.size(1);
  at::Tensor kept_A = keep_TK.reshape({-1}).nonzero().reshape({-1});
  at::Tensor kept_expert = experts_TK.reshape({-1}).index_select(0, kept_A);
  at::Tensor order = std::get<1>(at::sort(kept_expert, /*stable=*/true, 0, false));

  ExpertOrder result;
  result.assignment_of_row_R = kept_A.index_select(0, order);
  result.token_of_row_R = at::div(result.assignment_of_row_R, top_k, "floor");
  result.row_of_kept_A =
      at::empty_like(order).index_put_({order}, at::arange(order.numel(), order.options()));
  at::Tensor kept_per_token = keep_TK.sum(1);
  result.kept_offsets_T = kept_per_token.cumsum(0) - kept_per_token;
  // Device-to-host sync: expert slice boundaries drive the per-expert matmuls.
  at::Tensor counts_E = at::bincount(kept_expert, {}, num_experts).to(at::kCPU);
  result.rows_per_expert.assign(counts_E.data_ptr<int64_t>(),
                                counts_E.data_ptr<int64_t>() + num_experts);
  return result;
}

at::Tensor gather_rows(const at::Tensor& x_TD, const ExpertOrder& order) {
  return x_TD.index_select(0, order.token_of_row_R);
}

at::Tensor combine_rows(const at::Tensor& y_RD, const at::Tensor& weights_TK,
                        const ExpertOrder& order) {
  // One pass: an embedding bag per token over its kept rows, weighted and summed.
  at::Tensor kept_A = order.assignment_of_row_R.index_select(0, order.row_of_kept_A);
  // The weights take the rows' dtype (bf16 expert outputs under autocast, gates in fp32).
  at::Tensor weight_A = weights_TK.reshape({-1}).index_select(0, kept_A).to(y_RD.scalar_type());
  return std::get<0>(at::embedding_bag(y_RD, order.row_of_kept_A, order.kept_offsets_T,
                                       /*scale_grad_by_freq=*/false, /*mode=sum*/ 0,
                                       /*sparse=*/false, weight_A));
}

}  // namespace triage
