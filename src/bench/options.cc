// The benchmarks' shared options; see the header.
#include "bench/options.h"

#include <memory>
#include <vector>

#include "common/error.h"
#include "moe/routing_override.h"

namespace triage::bench {

void add_layer_shape_options(CLI::App& bench, LayerShape& shape, const std::string& tokens_help,
                             const std::string& experts_help) {
  bench.add_option("--tokens", shape.tokens, tokens_help)
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  bench.add_option("--d-model", shape.d_model, "Model width")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  bench.add_option("--d-expert", shape.d_expert, "Expert hidden width")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  bench.add_option("--experts", shape.experts, experts_help)
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  bench.add_option("--top-k", shape.top_k, "Experts per token")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

void check_layer_shape(const LayerShape& shape) {
  if (shape.top_k > shape.experts)
    throw Error("--top-k " + std::to_string(shape.top_k) + ": expected at most --experts (" +
                std::to_string(shape.experts) + ")");
}

MoeConfig layer_config(const LayerShape& shape) {
  MoeConfig c;
  c.num_experts = shape.experts;
  c.top_k = shape.top_k;
  c.d_expert = shape.d_expert;
  c.expert_type = ExpertType::kSwiglu;
  c.capacity_factor = 0.0;
  c.eval_capacity_factor = 0.0;
  return c;
}

double active_flops(const LayerShape& shape, double tokens) {
  return 3.0 * 2.0 * tokens * double(shape.top_k) * 3.0 * double(shape.d_model) *
         double(shape.d_expert);
}

void add_repetition_options(CLI::App& bench, Repetitions& repetitions) {
  bench.add_option("--reps", repetitions.reps, "Timed repetitions")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  bench.add_option("--warmup", repetitions.warmup, "Untimed repetitions first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

void add_config_options(CLI::App& bench, std::string& config_path,
                        std::vector<std::string>& overrides, bool required,
                        const std::string& help) {
  CLI::Option* config = bench.add_option("config", config_path, help)->check(CLI::ExistingFile);
  if (required) config->required();
  bench.add_option("--set", overrides, "Override a config key: section.key=value (repeatable)");
}

void add_out_option(CLI::App& bench, std::string& out, const std::string& help) {
  bench.add_option("--out", out, help);
}

RoutingOverride parse_bench_routing(const std::string& routing, int64_t experts, int64_t ranks,
                                    int64_t top_k) {
  if (routing == "uniform") return {};
  RoutingOverride rule;
  try {
    rule = parse_routing_override(routing);
  } catch (const Error& e) {
    throw Error("--routing " + routing + ": expected uniform, " + e.what());
  }
  const int64_t per_rank = experts / ranks;
  if ((rule.kind == RoutingOverride::Kind::kHot && rule.expert >= experts) ||
      (rule.kind == RoutingOverride::Kind::kEmptyRank &&
       (rule.rank >= ranks || top_k > experts - per_rank)))
    throw Error("--routing " + routing + ": expected an expert or rank of this layout (" +
                std::to_string(experts) + " experts on " + std::to_string(ranks) + " ranks)");
  if (rule.kind == RoutingOverride::Kind::kReplay)
    rule.replay_loads = std::make_shared<const std::vector<std::vector<double>>>(
        load_replay_loads(rule.run_dir, experts));
  return rule;
}

}  // namespace triage::bench
