// The routing overrides; see the header. Draws are hashes, not generator state, so they
// depend only on (seed, global assignment index) and no state needs checkpointing.
#include "moe/routing_override.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

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

// Inverse CDF of P(e) ~ 1 / (e + 1)^s over e in [0, E).
std::vector<double> zipf_cdf(int64_t experts, double exponent) {
  std::vector<double> cdf(experts);
  double sum = 0;
  for (int64_t e = 0; e < experts; ++e) cdf[e] = sum += std::pow(double(e + 1), -exponent);
  for (double& c : cdf) c /= sum;
  return cdf;
}

}  // namespace

at::Tensor override_routing(const RoutingOverride& rule, const at::Tensor& experts_TK,
                            const at::Tensor& scores_TE, int64_t first_token, uint64_t seed,
                            int64_t experts_per_rank) {
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
  const std::vector<double> cdf =
      rule.kind == Kind::kZipf ? zipf_cdf(experts, rule.exponent) : std::vector<double>{};
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

}  // namespace triage
