#include "model/feed_forward.h"

namespace triage {

FeedForward::FeedForward(int64_t d_model, int64_t d_hidden, ExpertType type, double out_std,
                         at::ScalarType dtype, at::Generator& generator)
    : type_(type) {
  w_in_ = normal_parameter({d_model, d_hidden}, kInitStd, dtype, generator);
  if (type == ExpertType::kSwiglu)
    w_up_ = normal_parameter({d_model, d_hidden}, kInitStd, dtype, generator);
  w_out_ = normal_parameter({d_hidden, d_model}, out_std, dtype, generator);
}

at::Tensor FeedForward::forward(const at::Tensor& x) const {
  at::Tensor hidden = at::matmul(x, w_in_);
  hidden = expert_hidden(type_, hidden,
                         type_ == ExpertType::kSwiglu ? at::matmul(x, w_up_) : at::Tensor());
  return at::matmul(hidden, w_out_);
}

ParameterList FeedForward::parameters() const {
  // The names of the experts' weights, so a dense block reads like one expert.
  if (type_ == ExpertType::kGelu) return {{"w_in", w_in_}, {"w_out", w_out_}};
  ParameterList params{{"w_gate", w_in_}, {"w_up", w_up_}};
  params.push_back({"w_out", w_out_});
  return params;
}

}  // namespace triage
