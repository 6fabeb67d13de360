// RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * weight, over the last dim.
// No mean subtraction and no bias, as in LLaMA, Mixtral and DeepSeek.
#pragma once

#include <ATen/ATen.h>

namespace triage {

inline at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * weight;
}

}  // namespace triage
