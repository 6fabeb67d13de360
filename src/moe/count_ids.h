// Counting ids into bins without a device-to-host sync: at::bincount sizes its result from
// the largest id, which on CUDA reads that id back to the host; a scatter-add into a
// result of known size does not.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace triage {

// How many of `ids` (integers in [0, bins), any shape) fall in each bin, each counted with
// its weight when `weights` (same shape, integer or bool) is given: int64 on ids' device.
inline at::Tensor count_ids(const at::Tensor& ids, int64_t bins, const at::Tensor& weights = {}) {
  const at::Tensor flat = ids.reshape({-1}).to(at::kLong);
  const at::Tensor added =
      weights.defined() ? weights.reshape({-1}).to(at::kLong) : at::ones_like(flat);
  return at::zeros({bins}, flat.options()).scatter_add_(0, flat, added);
}

}  // namespace triage
