// What the trainer reports: the per-step line on the console, the records appended to
// <out>/metrics.jsonl (one JSON object per line, read by plots and tests) and the tables
// of the end-of-run summary.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "train/specialisation.h"

namespace triage {

struct StepMetrics {
  int64_t step = 0, steps = 0;  // 1-based step just taken, of steps
  double loss = 0;              // lm + classification (the task loss)
  double lm_loss = 0, class_loss = 0;
  double balance_loss = 0, z_loss = 0;  // summed over MoE layers
  double lr = 0, grad_norm = 0;
  int64_t tokens = 0;  // real tokens (padding not counted) in the step's global batches
  double tokens_per_s = 0, step_ms = 0;
  double dropped_pct = 0;        // assignments over capacity, all layers
  double max_mean_load = 0;      // busiest expert / mean, worst layer
  double received_max_mean = 0;  // rows the busiest rank's experts took in / the mean, worst layer
  std::vector<std::vector<int64_t>> tokens_per_expert;  // [MoE layer][expert], whole world
  // moe.max_receive_factor: [MoE layer][EP rank] assignments dropped at that rank's bound,
  // whole world; bound_dropped is their sum (0 when unbounded).
  std::vector<std::vector<int64_t>> bound_dropped_per_rank;
  int64_t bound_dropped = 0;
};

struct EvalMetrics {
  int64_t step = 0;
  double lm_loss = 0, class_loss = 0, accuracy = 0;
  int64_t sequences = 0;
  std::vector<ContingencyTable> tables;  // per MoE layer: [label][expert] first choices
  std::vector<double> nmi;               // per MoE layer
};

// "step   12/200 [###.......]   6% | loss 2.8512 | bal ... | ETA 0:21"
std::string step_line(const StepMetrics& m, double eta_seconds);
std::string eval_line(const EvalMetrics& m);
nlohmann::json to_json(const StepMetrics& m);
nlohmann::json to_json(const EvalMetrics& m, const std::vector<std::string>& label_names);

// The contingency table as aligned text: one row per label, one column per expert.
std::string contingency_text(const ContingencyTable& table,
                             const std::vector<std::string>& label_names);

// <out>/metrics.jsonl, opened for appending. On resume, records after `keep_through_step`
// (written by the interrupted run past its last checkpoint) are dropped first, so the file
// reads as one uninterrupted run.
class MetricsFile {
 public:
  MetricsFile(const std::string& path, int64_t keep_through_step);
  void append(const nlohmann::json& record);

 private:
  std::ofstream out_;
};

}  // namespace triage
