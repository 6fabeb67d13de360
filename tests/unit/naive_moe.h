// A deliberately naive MoE layer for tests: plain loops over doubles, one token and one
// expert at a time, sharing no code with src/moe. It is the independent reference the
// layer's output is compared against.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "common/parameters.h"
#include "config/config.h"

namespace triage::testing_support {

inline at::Tensor parameter(const ParameterList& params, const std::string& name) {
  for (const auto& p : params)
    if (p.name == name) return p.tensor.detach().contiguous();
  ADD_FAILURE() << "no parameter " << name;
  return {};
}

struct NaiveResult {
  at::Tensor y_TD;
  std::vector<std::vector<int64_t>> chosen;  // [token] experts, best first
  std::vector<std::vector<double>> weight;   // [token] gate weights of those choices
  int64_t capacity = -1;                     // per expert; -1 when dropless
  std::vector<int64_t> kept_per_expert;
  int64_t dropped = 0;
  double balance_loss = 0, z_loss = 0;  // the config's coefficients applied
};

// Group-limited routing: the experts a token may choose, in `groups` groups of consecutive
// ids, of which it keeps the `best` with the highest sum of their two best scores.
inline std::vector<bool> naive_allowed_experts(const std::vector<double>& s, int64_t groups,
                                               int64_t best) {
  const int64_t E = int64_t(s.size()), per_group = E / groups;
  std::vector<std::pair<double, int64_t>> group_scores;  // (score, group)
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<double> members(s.begin() + g * per_group, s.begin() + (g + 1) * per_group);
    std::sort(members.rbegin(), members.rend());
    double sum = 0;
    for (int64_t i = 0; i < std::min<int64_t>(2, per_group); ++i) sum += members[i];
    group_scores.push_back({sum, g});
  }
  std::stable_sort(group_scores.begin(), group_scores.end(),
                   [](auto& a, auto& b) { return a.first > b.first; });
  std::vector<bool> allowed(E, false);
  for (int64_t i = 0; i < best; ++i)
    for (int64_t e = 0; e < per_group; ++e) allowed[group_scores[i].second * per_group + e] = true;
  return allowed;
}

// Expert e of `params` applied to one row x_D, by loops.
inline std::vector<double> naive_expert(const at::Tensor& x_D, const ParameterList& params,
                                        const MoeConfig& c, int64_t e) {
  const bool swiglu = c.expert_type == ExpertType::kSwiglu;
  at::Tensor w_in = parameter(params, swiglu ? "experts.w_gate" : "experts.w_in");
  at::Tensor w_up = swiglu ? parameter(params, "experts.w_up") : at::Tensor();
  at::Tensor w_out = parameter(params, "experts.w_out");
  at::Tensor x = x_D.detach().to(at::kDouble).contiguous();
  const int64_t D = x.size(0), H = w_in.size(2);
  auto X = x.accessor<double, 1>();
  auto Win = w_in.accessor<double, 3>();
  auto Wout = w_out.accessor<double, 3>();
  std::vector<double> hidden(H), out(D, 0.0);
  for (int64_t h = 0; h < H; ++h) {
    double a = 0, b = 0;
    for (int64_t d = 0; d < D; ++d) a += X[d] * Win[e][d][h];
    if (swiglu) {
      auto Wup = w_up.accessor<double, 3>();
      for (int64_t d = 0; d < D; ++d) b += X[d] * Wup[e][d][h];
      hidden[h] = a / (1 + std::exp(-a)) * b;
    } else {
      hidden[h] = 0.5 * a * (1 + std::erf(a / std::sqrt(2.0)));
    }
  }
  for (int64_t d = 0; d < D; ++d)
    for (int64_t h = 0; h < H; ++h) out[d] += hidden[h] * Wout[e][h][d];
  return out;
}

// y[t] = sum over t's kept choices e of weight(t, e) * expert_e(x[t]); the balance loss and
// z-loss of this batch alone (a local balance loss). num_groups: group-limited routing's
// groups, used when c.topk_groups > 0.
inline NaiveResult naive_moe(const at::Tensor& x_in, const ParameterList& params,
                             const MoeConfig& c, double capacity_factor, int64_t num_groups = 1) {
  at::Tensor x = x_in.detach().to(at::kDouble).contiguous();
  const int64_t T = x.size(0), D = x.size(1), E = c.num_experts, K = c.top_k;
  at::Tensor gate = parameter(params, "router.gate").to(at::kDouble);
  auto X = x.accessor<double, 2>();
  auto G = gate.accessor<double, 2>();

  // Routing: scores, top-k, weights; the sums the auxiliary losses need.
  NaiveResult result;
  std::vector<std::vector<int64_t>>& chosen = result.chosen;
  std::vector<std::vector<double>>& weight = result.weight;
  chosen.resize(T);
  weight.resize(T);
  std::vector<std::vector<double>> score(T);
  std::vector<double> routed(E, 0.0), probability_sum(E, 0.0);
  double z_sum = 0;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> s(E);
    for (int64_t e = 0; e < E; ++e) {
      double logit = 0;
      for (int64_t d = 0; d < D; ++d) logit += X[t][d] * G[e][d];
      s[e] = logit;
    }
    double log_sum_exp = 0;
    for (double v : s) log_sum_exp += std::exp(v);
    z_sum += std::pow(std::log(log_sum_exp), 2);
    if (c.score_function == ScoreFunction::kSoftmax) {
      double top = *std::max_element(s.begin(), s.end()), sum = 0;
      for (double& v : s) sum += (v = std::exp(v - top));
      for (double& v : s) v /= sum;
    } else {
      for (double& v : s) v = 1 / (1 + std::exp(-v));
    }
    double score_sum = 0;
    for (double v : s) score_sum += v;
    for (int64_t e = 0; e < E; ++e) probability_sum[e] += s[e] / score_sum;
    std::vector<bool> allowed(E, true);
    if (c.topk_groups > 0) allowed = naive_allowed_experts(s, num_groups, c.topk_groups);
    std::vector<int64_t> order;
    for (int64_t e = 0; e < E; ++e)
      if (allowed[e]) order.push_back(e);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return s[a] > s[b]; });
    for (int64_t j = 0; j < K; ++j) routed[order[j]] += 1;
    double chosen_sum = 0;
    for (int64_t j = 0; j < K; ++j) chosen_sum += s[order[j]];
    for (int64_t j = 0; j < K; ++j) {
      chosen[t].push_back(order[j]);
      score[t].push_back(s[order[j]]);
      double w = c.renormalize && K > 1 ? s[order[j]] / chosen_sum : s[order[j]];
      weight[t].push_back(w * c.route_scale);
    }
  }

  double balance = 0;
  for (int64_t e = 0; e < E; ++e) balance += routed[e] / double(T * K) * probability_sum[e] / T;
  result.balance_loss = c.balance_loss_coef * double(E) * balance;
  result.z_loss = c.z_loss_coef * z_sum / double(T);

  // Capacity: per expert, the assignments it keeps.
  std::map<std::pair<int64_t, int64_t>, bool> kept;  // (token, expert) -> kept
  result.kept_per_expert.assign(E, 0);
  for (int64_t e = 0; e < E; ++e) {
    std::vector<std::pair<int64_t, double>> arrivals;  // (token, score), token order
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < K; ++j)
        if (chosen[t][j] == e) arrivals.push_back({t, score[t][j]});
    int64_t capacity = int64_t(arrivals.size());
    if (capacity_factor > 0) {
      capacity = std::max<int64_t>(c.min_capacity,
                                   int64_t(std::ceil(capacity_factor * T * K / double(E) - 1e-9)));
      result.capacity = capacity;
      if (c.drop_policy == DropPolicy::kScore)
        std::stable_sort(arrivals.begin(), arrivals.end(),
                         [](auto& a, auto& b) { return a.second > b.second; });
    }
    for (size_t i = 0; i < arrivals.size(); ++i) {
      bool keep = int64_t(i) < capacity;
      kept[{arrivals[i].first, e}] = keep;
      result.kept_per_expert[e] += keep;
      result.dropped += !keep;
    }
  }

  // Experts, one token at a time.
  result.y_TD = at::zeros({T, D}, at::kDouble);
  auto Y = result.y_TD.accessor<double, 2>();
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < K; ++j) {
      const int64_t e = chosen[t][j];
      if (!kept[{t, e}]) continue;
      const std::vector<double> out = naive_expert(x[t], params, c, e);
      for (int64_t d = 0; d < D; ++d) Y[t][d] += weight[t][j] * out[size_t(d)];
    }
  }
  return result;
}

}  // namespace triage::testing_support
