// Stacked expert MLPs, run one contiguous slice per expert.
#include "moe/experts.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "common/error.h"

namespace triage {

std::vector<ExpertRun> runs_per_expert(const std::vector<int64_t>& rows_per_expert) {
  std::vector<ExpertRun> runs;
  for (size_t e = 0; e < rows_per_expert.size(); ++e)
    runs.push_back({int64_t(e), rows_per_expert[e]});
  return runs;
}

ExpertType parse_expert_type(const std::string& name) {
  if (name == "gelu") return ExpertType::kGelu;
  TRIAGE_ASSERT(name == "swiglu", "unknown expert type " << name);
  return ExpertType::kSwiglu;
}

Experts::Experts(int64_t first_expert, int64_t num_experts, int64_t d_model, int64_t d_hidden,
                 ExpertType type, at::ScalarType dtype, uint64_t seed)
    : type_(type), first_expert_(first_expert) {
  const double in_std = 1.0 / std::sqrt(double(d_model));
  const double out_std = 1.0 / std::sqrt(double(d_hidden));
  std::vector<at::Tensor> w_in, w_up, w_out;
  for (int64_t e = first_expert; e < first_expert + num_experts; ++e) {
    // A generator per global expert id (golden-ratio spacing keeps seeds apart).
    at::Generator gen =
        at::make_generator<at::CPUGeneratorImpl>(seed + 0x9E3779B97F4A7C15ull * uint64_t(e + 1));
    auto options = at::TensorOptions().dtype(dtype);
    w_in.push_back(at::normal(0.0, in_std, {d_model, d_hidden}, gen, options));
    if (type == ExpertType::kSwiglu)
      w_up.push_back(at::normal(0.0, in_std, {d_model, d_hidden}, gen, options));
    w_out.push_back(at::normal(0.0, out_std, {d_hidden, d_model}, gen, options));
  }
  w_in_EDH_ = at::stack(w_in).set_requires_grad(true);
  if (type == ExpertType::kSwiglu) w_up_EDH_ = at::stack(w_up).set_requires_grad(true);
  w_out_EHD_ = at::stack(w_out).set_requires_grad(true);
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

at::Tensor Experts::forward(const at::Tensor& x_RD, const std::vector<ExpertRun>& runs) const {
  std::vector<at::Tensor> outputs;
  int64_t offset = 0;
  for (const ExpertRun& run : runs) {
    TRIAGE_ASSERT(run.expert >= 0 && run.expert < num_experts(),
                  "run for expert " << run.expert << " of " << num_experts());
    if (run.rows == 0) continue;
    outputs.push_back(apply_one(run.expert, x_RD.narrow(0, offset, run.rows)));
    offset += run.rows;
  }
  TRIAGE_ASSERT(offset == x_RD.size(0), "runs cover " << offset << " rows of " << x_RD.size(0));
  if (outputs.empty()) return at::zeros({0, w_out_EHD_.size(2)}, x_RD.options());
  return outputs.size() == 1 ? outputs[0] : at::cat(outputs, 0);
}

ParameterList Experts::parameters() const {
  constexpr Sharding kExpert = Sharding::kExpert;
  if (type_ == ExpertType::kGelu)
    return {{"w_in", w_in_EDH_, kExpert}, {"w_out", w_out_EHD_, kExpert}};
  return {
      {"w_gate", w_in_EDH_, kExpert}, {"w_up", w_up_EDH_, kExpert}, {"w_out", w_out_EHD_, kExpert}};
}

}  // namespace triage
