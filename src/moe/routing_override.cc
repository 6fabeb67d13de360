// The routing overrides; see the header. Draws are hashes, not generator state, so they
// depend only on (seed, global assignment index) and no state needs checkpointing.
#include "moe/routing_override.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/error.h"

namespace triage {
namespace {

// splitmix64's finaliser: a well-mixed 64-bit hash of one integer.
uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) for one (seed, assignment).
double uniform(uint64_t seed, int64_t assignment) {
  return double(mix(seed ^ mix(uint64_t(assignment))) >> 11) * 0x1.0p-53;
}

// Cumulative shares of the given (unnormalised) loads, the inverse CDF to draw from.
std::vector<double> cdf_of(const std::vector<double>& loads) {
  std::vector<double> cdf(loads.size());
  double sum = 0;
  for (size_t e = 0; e < loads.size(); ++e) cdf[e] = sum += loads[e];
  for (size_t e = 0; e < loads.size(); ++e)  // a step with no load at all draws uniformly
    cdf[e] = sum > 0 ? cdf[e] / sum : double(e + 1) / double(loads.size());
  return cdf;
}

// P(e) ~ 1 / (e + 1)^s over e in [0, E).
std::vector<double> zipf_loads(int64_t experts, double exponent) {
  std::vector<double> loads(experts);
  for (int64_t e = 0; e < experts; ++e) loads[e] = std::pow(double(e + 1), -exponent);
  return loads;
}

}  // namespace

at::Tensor override_routing(const RoutingOverride& rule, const at::Tensor& experts_TK,
                            const at::Tensor& scores_TE, int64_t first_token, uint64_t seed,
                            int64_t experts_per_rank, int64_t step) {
  using Kind = RoutingOverride::Kind;
  if (rule.kind == Kind::kNone) return experts_TK;
  const int64_t tokens = experts_TK.size(0), top_k = experts_TK.size(1),
                experts = scores_TE.size(1);
  if (rule.kind == Kind::kEmptyRank) {
    // The router's own top-k among the experts that rank R does not hold.
    at::Tensor selection_TE = scores_TE.detach().clone();
    selection_TE.narrow(1, rule.rank * experts_per_rank, experts_per_rank)
        .fill_(-std::numeric_limits<double>::infinity());
    return std::get<1>(at::topk(selection_TE, top_k, -1));
  }
  // -1: keep the router's choice for that assignment.
  std::vector<int64_t> forced(size_t(tokens * top_k), -1);
  std::vector<double> cdf;
  if (rule.kind == Kind::kZipf) cdf = cdf_of(zipf_loads(experts, rule.exponent));
  if (rule.kind == Kind::kReplay) {
    TRIAGE_ASSERT(rule.replay_loads, "replay without its loads read");
    const auto& loads = *rule.replay_loads;
    TRIAGE_ASSERT(!loads.empty() && int64_t(loads[0].size()) == experts, "replay loads not loaded");
    cdf = cdf_of(loads[size_t(step % int64_t(loads.size()))]);
  }
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t k = 0; k < top_k; ++k) {
      const int64_t a = (first_token + t) * top_k + k;  // global assignment index
      int64_t& e = forced[size_t(t * top_k + k)];
      if (rule.kind == Kind::kBalanced) {
        e = a % experts;  // consecutive choices of a token are distinct experts
      } else if (rule.kind == Kind::kHot) {
        if (uniform(seed, a) < rule.fraction) e = rule.expert;
      } else {
        const double u = uniform(seed, a);
        e = int64_t(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
        if (e >= experts) e = experts - 1;  // u beyond the rounded last bucket
      }
    }
  }
  at::Tensor forced_TK =
      at::tensor(forced, at::kLong).view({tokens, top_k}).to(experts_TK.device());
  return at::where(forced_TK >= 0, forced_TK, experts_TK);
}

std::vector<std::vector<double>> load_replay_loads(const std::string& run_dir,
                                                   int64_t num_experts) {
  const std::string path = run_dir + "/metrics.jsonl";
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot read; replay:RUN_DIR expects a training run's folder");
  std::vector<std::vector<double>> loads;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    const std::string where = path + ":" + std::to_string(number) + ": ";
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object()) throw Error(where + "expected one JSON object per line");
    if (record.contains("eval")) continue;
    auto layers = record.find("tokens_per_expert");
    if (layers == record.end()) layers = record.find("expert_tokens");  // runs before 0.1
    if (layers == record.end() || !layers->is_array() || layers->empty() ||
        !(*layers)[0].is_array())
      throw Error(where + "expected tokens_per_expert, a list of per-layer token counts");
    std::vector<double> counts;
    for (const auto& n : (*layers)[0]) {
      if (!n.is_number() || n.get<double>() < 0)
        throw Error(where + "expected token counts >= 0 in tokens_per_expert");
      counts.push_back(n.get<double>());
    }
    if (int64_t(counts.size()) != num_experts)
      throw Error(where + "tokens_per_expert has " + std::to_string(counts.size()) +
                  " experts per layer; expected " + std::to_string(num_experts) +
                  ", the experts being routed");
    loads.push_back(std::move(counts));
  }
  if (loads.empty()) throw Error(path + ": no training steps recorded; expected at least one");
  return loads;
}

}  // namespace triage
