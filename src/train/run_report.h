// What a run tells its user at the start and at the end: the banner (layout, machine,
// placement, model size, data, resume point) and the summary (loss, throughput, held-out
// figures, expert choice by family), printed and written to <out>/summary.json.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/parameters.h"
#include "config/config.h"
#include "data/dataset.h"
#include "parallel/placement.h"
#include "parallel/process_groups.h"
#include "train/metrics.h"

namespace triage {

struct RunStart {
  const Config& config;
  const GroupLayout& layout;
  std::string environment;  // environment_line(): versions, threads
  const std::vector<RankPlacement>& placements;
  const ParameterList& parameters;  // this rank's: experts counted once per EP shard
  int64_t moe_layers;
  const Dataset& dataset;
  int64_t step, samples_seen;  // > 0 when resumed
  std::string exchange;        // how moe.exchange resolved (choose_exchange)
  std::string optimizer = "";  // the optimizer, its state per rank, how gradients sync
};

// The lines printed before the first step, ending in a newline.
std::string start_banner(const RunStart& run);

// train.keep_best's outcome.
struct BestSummary {
  std::string metric;  // eval_lm_loss | eval_loss
  int64_t step = 0;
  double value = 0;
  std::string checkpoint;  // its folder
};

struct RunEnd {
  int64_t steps;  // optimizer steps completed
  const std::vector<StepMetrics>& history;
  const EvalMetrics* baseline;   // before any update, or nullptr
  const EvalMetrics* last_eval;  // or nullptr when nothing was held out
  const std::vector<std::string>& label_names;
  double seconds;
  std::optional<BestSummary> best = std::nullopt;
  bool stopped_early = false;  // train.early_stop_patience ended the run
  double peak_rss_bytes = 0;   // the largest peak resident set of any rank (0: unknown)
};

// The summary as JSON (summary.json) and as the text printed after the last step.
nlohmann::json summary_json(const RunEnd& run);
std::string summary_text(const RunEnd& run);

}  // namespace triage
