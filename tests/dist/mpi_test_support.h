// Shared by the tests under mpirun: the EP size given on the command line, and the
// process groups for a config with that EP size.
#pragma once

#include <cstdint>

#include "config/config.h"
#include "dist/process_groups.h"

namespace triage::testing_support {

extern int64_t g_ep_size;  // from --ep N

inline MoeConfig ep_moe_config(int64_t num_experts, int64_t top_k) {
  MoeConfig config;
  config.num_experts = num_experts;
  config.top_k = top_k;
  return config;
}

inline ProcessGroups groups_for(const MoeConfig& moe) {
  Config config;
  config.moe = moe;
  config.parallel.expert = g_ep_size;
  return make_process_groups(config);
}

}  // namespace triage::testing_support
