#include "train/run_report.h"

#include <sstream>

namespace triage {

std::string start_banner(const RunStart& run) {
  const GroupLayout& g = run.layout;
  const Config& config = run.config;
  const Dataset& data = run.dataset;
  int64_t replicated = 0, expert = 0;
  for (const auto& p : run.parameters)
    (p.sharding == Sharding::kExpert ? expert : replicated) += p.tensor.numel();
  const int64_t experts_total = expert * g.ep_size;
  std::ostringstream out;
  out << "triage train: " << g.world_size << " rank(s), expert-parallel " << g.ep_size
      << " x data-parallel " << g.dp_size << ", " << config.train.dtype << "\n"
      << run.environment << "\n"
      << placement_table(run.placements)
      << (gpu_binding_line(run.placements).empty() ? "" : gpu_binding_line(run.placements) + "\n")
      << "model: " << config.model.n_layers << " layers (" << run.moe_layers << " MoE), "
      << config.moe.num_experts << " experts top-" << config.moe.top_k << ", "
      << (replicated + experts_total) << " parameters (" << experts_total << " in experts, "
      << (replicated + expert) << " on each rank)\n"
      << (g.ep_size > 1 ? "exchange: " + run.exchange + "\n" : "")
      << (run.optimizer.empty() ? "" : "optimizer: " + run.optimizer + "\n")
      << "data: " << data.source << "; " << data.train.size() << " train / " << data.test.size()
      << " held out";
  if (data.duplicates) out << "; " << data.duplicates << " duplicates removed";
  if (data.over_family_limit)
    out << "; " << data.over_family_limit
        << " left out by data.max_per_family = " << config.data.max_per_family;
  if (data.skipped_too_long)
    out << "; warning: " << data.skipped_too_long << " sequences over data.seq_len skipped";
  if (data.cropped_too_long)
    out << "; " << data.cropped_too_long << " sequences cropped to data.seq_len";
  out << "\n";
  for (const std::string& warning : data.warnings) out << "warning: " << warning << "\n";
  if (run.step > 0)
    out << "resumed at step " << run.step << " (" << run.samples_seen << " sequences seen)\n";
  return out.str();
}

namespace {

double mean_tokens_per_s(const std::vector<StepMetrics>& history) {
  double sum = 0;
  for (const auto& m : history) sum += m.tokens_per_s;
  return history.empty() ? 0.0 : sum / double(history.size());
}

}  // namespace

nlohmann::json summary_json(const RunEnd& run) {
  nlohmann::json summary = {{"steps", run.steps},
                            {"seconds", run.seconds},
                            {"mean_tokens_per_s", mean_tokens_per_s(run.history)}};
  if (!run.history.empty()) {
    summary["first_loss"] = run.history.front().loss;
    summary["last_loss"] = run.history.back().loss;
  }
  summary["stopped_early"] = run.stopped_early;
  if (run.peak_rss_bytes > 0) summary["peak_rss_bytes_max_over_ranks"] = run.peak_rss_bytes;
  if (run.best)
    summary["best"] = {{"metric", run.best->metric},
                       {"step", run.best->step},
                       {"value", run.best->value},
                       {"checkpoint", run.best->checkpoint}};
  if (run.last_eval) {
    summary["eval"] = to_json(*run.last_eval, run.label_names);
    if (run.baseline && !run.baseline->nmi.empty())
      summary["eval_before_training"] = to_json(*run.baseline, run.label_names);
  }
  return summary;
}

std::string summary_text(const RunEnd& run) {
  std::ostringstream out;
  if (!run.history.empty())
    out << "\nsummary: steps " << run.history.front().step << "-" << run.history.back().step
        << " in " << int64_t(run.seconds) << " s, " << int64_t(mean_tokens_per_s(run.history))
        << " tokens/s on average\n"
        << "  train loss " << run.history.front().loss << " -> " << run.history.back().loss << "\n";
  if (run.peak_rss_bytes > 0)
    out << "  peak memory (resident) " << int64_t(run.peak_rss_bytes / double(1 << 20))
        << " MiB on the largest rank\n";
  if (run.best)
    out << "  best held-out " << run.best->metric << " " << run.best->value << " at step "
        << run.best->step << (run.stopped_early ? " (stopped early)" : "") << ": "
        << run.best->checkpoint << "\n";
  const EvalMetrics* last = run.last_eval;
  if (!last) return out.str();
  out << "  " << eval_line(*last) << "\n";
  if (run.baseline && !run.baseline->nmi.empty()) {
    out << "  specialisation NMI per MoE layer, before -> after training:";
    for (size_t l = 0; l < last->nmi.size() && l < run.baseline->nmi.size(); ++l)
      out << (l ? "," : "") << " " << run.baseline->nmi[l] << " -> " << last->nmi[l];
    out << "\n";
  }
  for (size_t l = 0; l < last->tables.size(); ++l)
    out << "\n  expert choice by family, MoE layer " << l << " (NMI " << last->nmi[l] << "):\n"
        << contingency_text(last->tables[l], run.label_names);
  return out.str();
}

}  // namespace triage
