// Stacked expert MLPs, run one contiguous slice per expert.
#include "moe/experts.h"

#include <cmath>

#include "common/error.h"

namespace triage {

ExpertType parse_expert_type(const std::string& name) {
  if (name == "gelu") return ExpertType::kGelu;
  TRIAGE_ASSERT(name == "swiglu", "unknown expert type " << name);
  return ExpertType::kSwiglu;
}

Experts::Experts(int64_t num_experts, int64_t d_model, int64_t d_hidden, ExpertType type,
                 at::ScalarType dtype, at::Generator& generator)
    : type_(type) {
  const double in_std = 1.0 / std::sqrt(double(d_model));
  const double out_std = 1.0 / std::sqrt(double(d_hidden));
  w_in_EDH_ = normal_parameter({num_experts, d_model, d_hidden}, in_std, dtype, generator);
  if (type == ExpertType::kSwiglu)
    w_up_EDH_ = normal_parameter({num_experts, d_model, d_hidden}, in_std, dtype, generator);
  w_out_EHD_ = normal_parameter({num_experts, d_hidden, d_model}, out_std, dtype, generator);
}

at::Tensor Experts::apply_one(int64_t expert, const at::Tensor& x_ND) const {
  at::Tensor hidden = at::mm(x_ND, w_in_EDH_[expert]);
  if (type_ == ExpertType::kGelu) {
    hidden = at::gelu(hidden);
  } else {
    hidden = at::silu(hidden) * at::mm(x_ND, w_up_EDH_[expert]);
  }
  return at::mm(hidden, w_out_EHD_[expert]);
}

at::Tensor Experts::forward(const at::Tensor& x_RD,
                            const std::vector<int64_t>& rows_per_expert) const {
  TRIAGE_ASSERT(int64_t(rows_per_expert.size()) == num_experts(),
                rows_per_expert.size() << " counts for " << num_experts() << " experts");
  std::vector<at::Tensor> outputs;
  int64_t offset = 0;
  for (int64_t e = 0; e < num_experts(); ++e) {
    const int64_t rows = rows_per_expert[e];
    if (rows == 0) continue;
    outputs.push_back(apply_one(e, x_RD.narrow(0, offset, rows)));
    offset += rows;
  }
  TRIAGE_ASSERT(offset == x_RD.size(0), "counts sum to " << offset << ", rows " << x_RD.size(0));
  if (outputs.empty()) return at::zeros({0, w_out_EHD_.size(2)}, x_RD.options());
  return at::cat(outputs, 0);
}

ParameterList Experts::parameters() const {
  if (type_ == ExpertType::kGelu) return {{"w_in", w_in_EDH_}, {"w_out", w_out_EHD_}};
  return {{"w_gate", w_in_EDH_}, {"w_up", w_up_EDH_}, {"w_out", w_out_EHD_}};
}

}  // namespace triage
