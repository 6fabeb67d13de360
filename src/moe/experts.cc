// Stacked expert MLPs, run one contiguous slice per expert.
#include "moe/experts.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <cmath>

#include "common/error.h"
#include "moe/expert_pipeline.h"
#include "moe/grouped_math.h"

namespace triage {

std::vector<ExpertRun> runs_per_expert(const std::vector<int64_t>& tokens_per_expert) {
  std::vector<ExpertRun> runs;
  for (size_t e = 0; e < tokens_per_expert.size(); ++e)
    runs.push_back({int64_t(e), tokens_per_expert[e]});
  return runs;
}

Experts::Experts(int64_t first_expert, int64_t num_experts, int64_t d_model, int64_t d_hidden,
                 ExpertType type, at::ScalarType dtype, uint64_t seed, ExpertGemm gemm)
    : type_(type), gemm_(gemm), first_expert_(first_expert) {
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

ExpertWeights Experts::weights(at::ScalarType dtype) const {
  if (dtype == w_in_EDH_.scalar_type()) return {type_, w_in_EDH_, w_up_EDH_, w_out_EHD_};
  std::vector<int64_t> versions;
  for (const at::Tensor* w : {&w_in_EDH_, &w_up_EDH_, &w_out_EHD_})
    versions.push_back(w->defined() ? int64_t(w->_version()) : -1);
  const bool recorded = c10::GradMode::is_enabled();
  if (!cast_ || cast_->dtype != dtype || cast_->recorded != recorded ||
      cast_->versions != versions) {
    auto in = [&](const at::Tensor& w) { return w.defined() ? w.to(dtype) : w; };
    cast_ = CastWeights{dtype, recorded, versions, in(w_in_EDH_), in(w_up_EDH_), in(w_out_EHD_)};
  }
  return {type_, cast_->w_in_EDH, cast_->w_up_EDH, cast_->w_out_EHD};
}

at::Tensor Experts::forward_across(const at::Tensor& x_RD, const ExpertLayout& layout,
                                   Communicator& ep, const std::function<void()>& while_in_flight,
                                   bool grouped) const {
  return run_experts(x_RD, weights(x_RD.scalar_type()), layout, &ep, while_in_flight, grouped,
                     recompute_);
}

bool Experts::uses_grouped_gemm(const at::Tensor& x_RD) const {
  if (gemm_ == ExpertGemm::kLoop) return false;
  // at::_grouped_mm takes float32/bfloat16/float16 and rows whose strides are multiples of
  // 16 bytes, i.e. widths that are multiples of 16 / element size.
  const at::ScalarType type = x_RD.scalar_type();
  const bool supported_type = type == at::kFloat || type == at::kBFloat16 || type == at::kHalf;
  const int64_t align = 16 / int64_t(x_RD.element_size());
  const bool aligned = w_in_EDH_.size(1) % align == 0 && w_in_EDH_.size(2) % align == 0;
  if (gemm_ == ExpertGemm::kGrouped) {
    if (!supported_type || !aligned)
      throw Error(
          "moe.expert_gemm = grouped: expected float32/bfloat16 and d_model, d_expert multiples "
          "of " +
          std::to_string(align) + " (got " + std::string(c10::toString(type)) + ", " +
          std::to_string(w_in_EDH_.size(1)) + ", " + std::to_string(w_in_EDH_.size(2)) + ")");
    return true;
  }
  // auto: bf16 only. In float32 ATen's grouped GEMM is a fallback that copies the offsets
  // to the host (a device sync, seen in forward and backward on an H200) and was no faster
  // than the loop there.
  return x_RD.is_cuda() && type == at::kBFloat16 && aligned;
}

at::Tensor Experts::forward(const at::Tensor& x_RD, const std::vector<ExpertRun>& runs) const {
  int64_t covered = 0;
  for (const ExpertRun& run : runs) {
    TRIAGE_ASSERT(run.expert >= 0 && run.expert < num_experts(),
                  "run for expert " << run.expert << " of " << num_experts());
    covered += run.rows;
  }
  TRIAGE_ASSERT(covered == x_RD.size(0), "runs cover " << covered << " rows of " << x_RD.size(0));
  ExpertLayout layout;
  int64_t offset = 0;
  for (const ExpertRun& run : runs) {
    if (run.rows > 0) layout.own_runs.push_back({run.expert, offset, run.rows});
    offset += run.rows;
  }
  // The grouped path takes the runs as one block, its rows regrouped by expert (runs from
  // several source ranks interleave experts), as the pipelined exchange's blocks are.
  const bool grouped = x_RD.size(0) > 0 && uses_grouped_gemm(x_RD);
  return run_experts(x_RD, weights(x_RD.scalar_type()), layout, nullptr, {}, grouped, recompute_);
}

ParameterList Experts::parameters() const {
  constexpr Sharding kExpert = Sharding::kExpert;
  if (type_ == ExpertType::kGelu)
    return {{"w_in", w_in_EDH_, kExpert}, {"w_out", w_out_EHD_, kExpert}};
  return {
      {"w_gate", w_in_EDH_, kExpert}, {"w_up", w_up_EDH_, kExpert}, {"w_out", w_out_EHD_, kExpert}};
}

}  // namespace triage
