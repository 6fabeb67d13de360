// Every phase a training step's time is split into, named once. The code marks phases
// with these values (phase_clock::enter(Phase::kRoute)), the watchdog names a stuck
// exchange by them, and the benchmarks' breakdowns and the scaling model index them, so a
// phase that is not in this table is a compile error, and so is a table row out of place.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

namespace triage {

enum class Phase {
  // One MoE layer, forward, in the order `triage bench layer` reports them.
  kRoute,          // the router: scores, top-k, capacity, the auxiliary losses
  kSortPack,       // rows sorted by expert and packed for the exchange
  kCountExchange,  // the all-to-all of per-expert row counts
  kWait,           // a timed barrier before a collective: the skew between ranks
  kDispatchRows,   // the rows on their way to their experts
  kExperts,        // the expert GEMMs
  kCombineRows,    // the experts' outputs on their way home
  kCombine,        // each token's gate-weighted sum of its rows' outputs
  // ... and backward.
  kCombineBwd,
  kCombineRowsBwd,
  kWaitBwd,
  kExpertsBwd,
  kDispatchRowsBwd,
  kSortPackRouteBwd,
  // Around the layers.
  kWorkBesideExchange,  // work that needs none of the exchange (the shared experts)
  kCompute,             // the model outside its MoE layers' own phases
  kComputeBwd,
  kGradientSync,
  kGradientClip,
  kOptimizer,
  kStatistics,  // the step's metrics
  // The scaling model's only: the router gradient's all-reduce, which training does in
  // the gradient sync.
  kRouterAllReduce,
};

// What a phase's time counts as in `triage bench step`'s and the model's breakdowns.
enum class PhaseCategory { kCompute, kExchange, kWait, kGradientSync, kOptimizer, kBookkeeping };

struct PhaseInfo {
  Phase phase;
  std::string_view label;  // as benchmarks print and write it
  PhaseCategory category;
  Phase backward;  // the phase of its backward: itself, or its " bwd" row
};

inline constexpr std::array kPhaseTable = {
    PhaseInfo{Phase::kRoute, "route", PhaseCategory::kCompute, Phase::kRoute},
    PhaseInfo{Phase::kSortPack, "sort/pack", PhaseCategory::kCompute, Phase::kSortPack},
    PhaseInfo{Phase::kCountExchange, "count exchange", PhaseCategory::kExchange,
              Phase::kCountExchange},
    PhaseInfo{Phase::kWait, "wait", PhaseCategory::kWait, Phase::kWaitBwd},
    PhaseInfo{Phase::kDispatchRows, "dispatch rows", PhaseCategory::kExchange,
              Phase::kDispatchRowsBwd},
    PhaseInfo{Phase::kExperts, "experts", PhaseCategory::kCompute, Phase::kExpertsBwd},
    PhaseInfo{Phase::kCombineRows, "combine rows", PhaseCategory::kExchange,
              Phase::kCombineRowsBwd},
    PhaseInfo{Phase::kCombine, "combine", PhaseCategory::kCompute, Phase::kCombineBwd},
    PhaseInfo{Phase::kCombineBwd, "combine bwd", PhaseCategory::kCompute, Phase::kCombineBwd},
    PhaseInfo{Phase::kCombineRowsBwd, "combine rows bwd", PhaseCategory::kExchange,
              Phase::kCombineRowsBwd},
    PhaseInfo{Phase::kWaitBwd, "wait bwd", PhaseCategory::kWait, Phase::kWaitBwd},
    PhaseInfo{Phase::kExpertsBwd, "experts bwd", PhaseCategory::kCompute, Phase::kExpertsBwd},
    PhaseInfo{Phase::kDispatchRowsBwd, "dispatch rows bwd", PhaseCategory::kExchange,
              Phase::kDispatchRowsBwd},
    PhaseInfo{Phase::kSortPackRouteBwd, "sort/pack + route bwd", PhaseCategory::kCompute,
              Phase::kSortPackRouteBwd},
    PhaseInfo{Phase::kWorkBesideExchange, "work beside the exchange", PhaseCategory::kCompute,
              Phase::kWorkBesideExchange},
    PhaseInfo{Phase::kCompute, "compute", PhaseCategory::kCompute, Phase::kComputeBwd},
    PhaseInfo{Phase::kComputeBwd, "compute bwd", PhaseCategory::kCompute, Phase::kComputeBwd},
    PhaseInfo{Phase::kGradientSync, "gradient sync", PhaseCategory::kGradientSync,
              Phase::kGradientSync},
    PhaseInfo{Phase::kGradientClip, "gradient clip", PhaseCategory::kOptimizer,
              Phase::kGradientClip},
    PhaseInfo{Phase::kOptimizer, "optimizer", PhaseCategory::kOptimizer, Phase::kOptimizer},
    PhaseInfo{Phase::kStatistics, "statistics", PhaseCategory::kBookkeeping, Phase::kStatistics},
    PhaseInfo{Phase::kRouterAllReduce, "router all-reduce", PhaseCategory::kExchange,
              Phase::kRouterAllReduce},
};

constexpr bool table_is_in_enum_order() {
  for (std::size_t i = 0; i < kPhaseTable.size(); ++i)
    if (static_cast<std::size_t>(kPhaseTable[i].phase) != i) return false;
  return true;
}
static_assert(table_is_in_enum_order(), "kPhaseTable: one row per Phase, in the enum's order");
static_assert(static_cast<std::size_t>(Phase::kRouterAllReduce) + 1 == kPhaseTable.size(),
              "kPhaseTable: a Phase has no row");

constexpr std::string_view phase_label(Phase phase) {
  return kPhaseTable[static_cast<std::size_t>(phase)].label;
}
constexpr PhaseCategory phase_category(Phase phase) {
  return kPhaseTable[static_cast<std::size_t>(phase)].category;
}
constexpr Phase backward_of(Phase phase) {
  return kPhaseTable[static_cast<std::size_t>(phase)].backward;
}
// Whether `phase` runs in backward (its label ends in " bwd"; waits before it are "wait bwd").
constexpr bool is_backward(Phase phase) {
  const std::string_view label = phase_label(phase);
  return label.size() >= 4 && label.substr(label.size() - 4) == " bwd";
}

// The name of a category, as `triage bench step` and the scaling model print it.
constexpr std::string_view category_label(PhaseCategory category) {
  switch (category) {
    case PhaseCategory::kCompute:
      return "compute";
    case PhaseCategory::kExchange:
      return "exchange";
    case PhaseCategory::kWait:
      return "wait";
    case PhaseCategory::kGradientSync:
      return "gradient sync";
    case PhaseCategory::kOptimizer:
      return "optimizer";
    case PhaseCategory::kBookkeeping:
      return "bookkeeping";
  }
  return "";
}

}  // namespace triage
