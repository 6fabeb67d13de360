#include "train/metrics.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "common/error.h"
#include "common/json_number.h"

namespace triage {

namespace {

std::string format(const char* pattern, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* pattern, ...) {
  char buffer[512];
  va_list args;
  va_start(args, pattern);
  std::vsnprintf(buffer, sizeof buffer, pattern, args);
  va_end(args);
  return buffer;
}

std::string duration(double seconds) {
  const int64_t s = int64_t(std::max(0.0, seconds) + 0.5);
  if (s >= 3600)
    return format("%lld:%02lld:%02lld", (long long)(s / 3600), (long long)(s / 60 % 60),
                  (long long)(s % 60));
  return format("%lld:%02lld", (long long)(s / 60), (long long)(s % 60));
}

}  // namespace

std::string step_line(const StepMetrics& m, double eta_seconds) {
  constexpr int kBar = 20;
  const int filled = int(kBar * m.step / std::max<int64_t>(1, m.steps));
  const std::string bar = std::string(filled, '#') + std::string(kBar - filled, '.');
  const int width = int(std::to_string(m.steps).size());
  return format(
             "step %*lld/%lld [%s] %3d%% | loss %.4f | bal %.4f | z %.4f | lr %.2e | gnorm %.3f | "
             "%7.0f tok/s | %6.1f ms | drop %5.2f%% | load max/mean %.2f | ETA %s",
             width, (long long)m.step, (long long)m.steps, bar.c_str(),
             int(100 * m.step / std::max<int64_t>(1, m.steps)), m.loss, m.balance_loss, m.z_loss,
             m.lr, m.grad_norm, m.tokens_per_s, m.step_ms, m.dropped_pct, m.max_mean_load,
             duration(eta_seconds).c_str()) +
         (m.bound_dropped > 0 ? format(" | bound drops %lld", (long long)m.bound_dropped)
                              : std::string());
}

std::string eval_line(const EvalMetrics& m) {
  std::string line = format("eval at step %lld: %lld held-out sequences | lm loss %.4f",
                            (long long)m.step, (long long)m.sequences, m.lm_loss);
  if (m.class_loss > 0 || m.accuracy > 0)
    line += format(" | class loss %.4f | accuracy %.1f%%", m.class_loss, 100 * m.accuracy);
  for (size_t i = 0; i < m.nmi.size(); ++i) line += format(" | NMI moe%zu %.3f", i, m.nmi[i]);
  return line;
}

nlohmann::json to_json(const StepMetrics& m) {
  return {{"step", m.step},
          {"loss", m.loss},
          {"lm_loss", m.lm_loss},
          {"class_loss", m.class_loss},
          {"balance_loss", m.balance_loss},
          {"z_loss", m.z_loss},
          {"lr", m.lr},
          {"grad_norm", m.grad_norm},
          {"tokens", m.tokens},
          {"tokens_per_s", m.tokens_per_s},
          {"step_ms", m.step_ms},
          {"dropped_pct", m.dropped_pct},
          {"max_mean_load", m.max_mean_load},
          {"received_max_mean", m.received_max_mean},
          {"tokens_per_expert", m.tokens_per_expert},
          {"bound_dropped", m.bound_dropped},
          {"bound_dropped_per_rank", m.bound_dropped_per_rank}};
}

nlohmann::json to_json(const EvalMetrics& m, const std::vector<std::string>& label_names) {
  return {{"eval", true},
          {"step", m.step},
          {"lm_loss", m.lm_loss},
          {"class_loss", m.class_loss},
          {"accuracy", m.accuracy},
          {"sequences", m.sequences},
          {"labels", label_names},
          {"contingency", m.tables},
          {"nmi", m.nmi}};
}

std::string contingency_text(const ContingencyTable& table,
                             const std::vector<std::string>& label_names) {
  size_t name_width = 6;
  for (const auto& name : label_names) name_width = std::max(name_width, name.size());
  std::ostringstream out;
  out << format("%-*s", int(name_width), "family");
  const size_t experts = table.empty() ? 0 : table[0].size();
  for (size_t e = 0; e < experts; ++e) out << format(" %7s", ("e" + std::to_string(e)).c_str());
  out << "\n";
  for (size_t i = 0; i < table.size(); ++i) {
    const std::string name = i < label_names.size() ? label_names[i] : std::to_string(i);
    out << format("%-*s", int(name_width), name.c_str());
    for (int64_t count : table[i]) out << format(" %7lld", (long long)count);
    out << "\n";
  }
  return out.str();
}

MetricsFile::MetricsFile(const std::string& path, int64_t keep_through_step) {
  std::vector<std::string> kept;
  if (keep_through_step >= 0 && std::filesystem::exists(path)) {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!record.is_object()) continue;
      // A line whose step is not a whole number is no step's record: dropped.
      const std::optional<int64_t> step =
          record.contains("step") ? whole_number_or_none<int64_t>(record["step"]) : 0;
      if (step && *step <= keep_through_step) kept.push_back(line);
    }
  }
  out_.open(path, std::ios::trunc);
  if (!out_) throw Error(path + ": cannot write the metrics file");
  for (const auto& line : kept) out_ << line << "\n";
  out_.flush();
}

void MetricsFile::append(const nlohmann::json& record) {
  out_ << record.dump() << "\n";
  out_.flush();
}

}  // namespace triage
