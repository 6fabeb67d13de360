// A config's training step in the scaling model's terms (scaling_model.h): its MoE layer
// shape at `tokens_per_rank`, its block counts and widths, and the parameters each rank
// syncs, at expert-parallel size `ep`. Shared by `bench model` and `bench calibrate`.
#pragma once

#include <cstdint>

#include "bench/scaling_model.h"
#include "config/config.h"

namespace triage {

model::StepShape step_shape(const Config& c, int64_t tokens_per_rank, int64_t ep);

}  // namespace triage
