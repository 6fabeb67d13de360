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
                        const ExpertOrder& order, int64_t num_tokens) {
  at::Tensor weight_R = weights_TK.reshape({-1}).index_select(0, order.assignment_of_row_R);
  at::Tensor weighted_RD = y_RD * weight_R.unsqueeze(1);
  return at::zeros({num_tokens, y_RD.size(1)}, y_RD.options())
      .index_add(0, order.token_of_row_R, weighted_RD);
}

}  // namespace triage
