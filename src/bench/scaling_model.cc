// The model's arithmetic; see the header. A "fluid" routing model: every source rank
// sends each expert its expected share of its T K assignments, so the busiest rank is the
// one whose experts hold the largest share (random fluctuation around it is ignored).
#include "bench/scaling_model.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

#include "common/error.h"
#include "parallel/phases.h"

namespace triage::model {

double shaped_s(double bytes, const Link& link) {
  return std::max(0.0, bytes - link.burst_bytes) / link.bandwidth_Bps;
}

namespace {

double positive(const nlohmann::json& section, const std::string& path, const std::string& where,
                const std::string& key, bool required = true) {
  const auto found = section.find(key);
  if (found == section.end()) {
    if (!required) return 0.0;
    throw Error(path + ": " + where + key + ": missing; expected a positive number");
  }
  if (!found->is_number() || found->get<double>() <= 0 || !std::isfinite(found->get<double>()))
    throw Error(path + ": " + where + key + " = " + found->dump() + ": expected a positive number");
  return found->get<double>();
}

const nlohmann::json& object_at(const nlohmann::json& parent, const std::string& path,
                                const std::string& key) {
  const auto found = parent.find(key);
  if (found == parent.end() || !found->is_object())
    throw Error(path + ": " + key + ": expected a mapping of numbers");
  return *found;
}

Link read_link(const nlohmann::json& links, const std::string& path, const std::string& name,
               bool required) {
  const auto found = links.find(name);
  if (found == links.end()) {
    if (required)
      throw Error(path + ": links." + name + ": missing; expected latency_s and bandwidth_Bps");
    return {};
  }
  Link link{positive(*found, path, "links." + name + ".", "latency_s"),
            positive(*found, path, "links." + name + ".", "bandwidth_Bps")};
  if (found->contains("burst_bytes")) {
    const nlohmann::json& burst = found->at("burst_bytes");
    if (!burst.is_number() || burst.get<double>() < 0)
      throw Error(path + ": links." + name + ".burst_bytes = " + burst.dump() +
                  ": expected a number of bytes, at least 0");
    link.burst_bytes = burst.get<double>();
  }
  return link;
}

// All-reduce of `bytes` over `ranks` as MPI and NCCL pick by size: log2 P latencies (the
// recursive-doubling bound small messages reach) plus the ring's 2 (P - 1) / P of the
// bytes through each rank's link (the bound large ones reach).
double allreduce_s(double bytes, int64_t ranks, const Link& link) {
  if (ranks <= 1) return 0.0;
  const double p = double(ranks);
  return std::ceil(std::log2(p)) * link.latency_s + shaped_s(2.0 * (p - 1.0) / p * bytes, link);
}

// When a host's ranks outnumber its slots they share them ("processor sharing"): n busy
// ranks run at min(1, slots / n) speed, so the busiest rank speeds up as the others finish
// and wait. Returns when the last of these ranks' work (seconds at full speed) is done.
double shared_finish_s(std::vector<double> work, double slots) {
  std::sort(work.begin(), work.end());
  double t = 0, done = 0;
  for (size_t i = 0; i < work.size(); ++i) {
    const double speed = std::min(1.0, slots / double(work.size() - i));
    t += (work[i] - done) / speed;
    done = work[i];
  }
  return t;
}

}  // namespace

// t = alpha + bytes / beta, robustly: alpha is the fastest small message (<= 4 KiB; a
// median per size already), beta the median of the bandwidths bytes / (t - alpha) of the
// points whose sizes lie within 4x of `typical_bytes` (the exchange's), where the layer
// operates: caches and TCP windows make one straight line over 8 B to 64 MiB a poor fit,
// and one size that stalled (a TCP window collapsing under a token bucket) must not set the
// slope, as it did through least squares, which weighs the largest sizes most.
Link fit_link(const std::vector<std::pair<double, double>>& points, double typical_bytes) {
  double alpha = 1e30;
  for (auto [bytes, t] : points)
    if (bytes <= 4096) alpha = std::min(alpha, t);
  if (alpha == 1e30) alpha = points.front().second;
  auto bandwidths = [&](double low, double high) {
    std::vector<double> found;
    for (auto [bytes, t] : points)
      if (bytes >= low && bytes <= high && t > alpha) found.push_back(bytes / (t - alpha));
    return found;
  };
  std::vector<double> near = bandwidths(typical_bytes / 4, typical_bytes * 4);
  if (near.empty()) near = bandwidths(4097, 1e300);
  if (near.empty()) return {alpha, 1e30};
  std::sort(near.begin(), near.end());
  const size_t mid = near.size() / 2;
  const double median = near.size() % 2 ? near[mid] : 0.5 * (near[mid - 1] + near[mid]);
  return {alpha, median};
}

double rate_at(const std::vector<std::pair<double, double>>& curve, double rows, double fallback) {
  if (curve.empty()) return fallback;
  if (rows <= curve.front().first) return curve.front().second;
  for (size_t i = 1; i < curve.size(); ++i) {
    const auto [r0, v0] = curve[i - 1];
    const auto [r1, v1] = curve[i];
    if (rows <= r1) return v0 + (v1 - v0) * std::log(rows / r0) / std::log(r1 / r0);
  }
  return curve.back().second;
}

namespace {
std::vector<std::pair<double, double>> read_curve(const nlohmann::json& c, const std::string& path,
                                                  const std::string& key) {
  std::vector<std::pair<double, double>> curve;
  const auto found = c.find(key);
  if (found == c.end()) return curve;
  const std::string expected =
      path + ": compute." + key + ": expected [[rows per expert, rate], ...] rising in rows";
  if (!found->is_array()) throw Error(expected);
  for (const auto& point : *found) {
    if (!point.is_array() || point.size() != 2 || !point[0].is_number() || !point[1].is_number() ||
        point[0].get<double>() <= 0 || point[1].get<double>() <= 0 ||
        (!curve.empty() && point[0].get<double>() <= curve.back().first))
      throw Error(expected);
    curve.emplace_back(point[0].get<double>(), point[1].get<double>());
  }
  return curve;
}
}  // namespace

Params read_params(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot read the model parameters");
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) throw Error(path + ": expected a JSON object (see `triage bench calibrate`)");
  Params p;
  p.slots_per_host = positive(j, path, "", "slots_per_host");
  if (j.contains("activation_bytes"))
    p.activation_bytes = positive(j, path, "", "activation_bytes");
  if (j.contains("gradient_bytes")) p.gradient_bytes = positive(j, path, "", "gradient_bytes");
  const nlohmann::json& links = object_at(j, path, "links");
  p.intra_host = read_link(links, path, "intra_host", true);
  p.inter_host = read_link(links, path, "inter_host", false);
  p.oversubscribed = read_link(links, path, "oversubscribed", false);
  if (j.contains("nics_per_host")) p.nics_per_host = positive(j, path, "", "nics_per_host");
  const nlohmann::json& c = object_at(j, path, "compute");
  const std::string where = "compute.";
  p.route_flops_per_s = positive(c, path, where, "route_flops_per_s");
  p.pack_bytes_per_s = positive(c, path, where, "pack_bytes_per_s");
  p.expert_forward_flops_per_s = positive(c, path, where, "expert_forward_flops_per_s");
  p.combine_bytes_per_s = positive(c, path, where, "combine_bytes_per_s");
  p.combine_backward_bytes_per_s = positive(c, path, where, "combine_backward_bytes_per_s");
  p.expert_backward_flops_per_s = positive(c, path, where, "expert_backward_flops_per_s");
  p.pack_route_backward_bytes_per_s = positive(c, path, where, "pack_route_backward_bytes_per_s");
  p.expert_forward_by_rows = read_curve(c, path, "expert_forward_by_rows");
  p.expert_backward_by_rows = read_curve(c, path, "expert_backward_by_rows");
  p.dense_flops_per_s = positive(c, path, where, "dense_flops_per_s");
  p.optimizer_bytes_per_s = positive(c, path, where, "optimizer_bytes_per_s");
  if (j.contains("assumptions")) {
    if (!j["assumptions"].is_array())
      throw Error(path + ": assumptions: expected a list of sentences");
    for (const auto& a : j["assumptions"])
      p.assumptions.push_back(a.is_string() ? a.get<std::string>() : a.dump());
  }
  return p;
}

nlohmann::ordered_json to_json(const Params& p) {
  auto link = [](const Link& l) {
    nlohmann::ordered_json out{{"latency_s", l.latency_s}, {"bandwidth_Bps", l.bandwidth_Bps}};
    if (l.burst_bytes > 0) out["burst_bytes"] = l.burst_bytes;
    return out;
  };
  nlohmann::ordered_json links = {{"intra_host", link(p.intra_host)}};
  if (p.inter_host.bandwidth_Bps > 0) links["inter_host"] = link(p.inter_host);
  if (p.oversubscribed.bandwidth_Bps > 0) links["oversubscribed"] = link(p.oversubscribed);
  return {{"slots_per_host", p.slots_per_host},
          {"activation_bytes", p.activation_bytes},
          {"gradient_bytes", p.gradient_bytes},
          {"nics_per_host", p.nics_per_host},
          {"links", links},
          {"compute",
           {{"route_flops_per_s", p.route_flops_per_s},
            {"pack_bytes_per_s", p.pack_bytes_per_s},
            {"expert_forward_flops_per_s", p.expert_forward_flops_per_s},
            {"combine_bytes_per_s", p.combine_bytes_per_s},
            {"combine_backward_bytes_per_s", p.combine_backward_bytes_per_s},
            {"expert_backward_flops_per_s", p.expert_backward_flops_per_s},
            {"pack_route_backward_bytes_per_s", p.pack_route_backward_bytes_per_s},
            {"dense_flops_per_s", p.dense_flops_per_s},
            {"optimizer_bytes_per_s", p.optimizer_bytes_per_s},
            {"expert_forward_by_rows", p.expert_forward_by_rows},
            {"expert_backward_by_rows", p.expert_backward_by_rows}}},
          {"assumptions", p.assumptions}};
}

// A host's network: its off-host bytes spread over its NICs, one per rank up to
// nics_per_host.
Link host_network(const Params& params, int64_t ranks_per_host) {
  Link network = params.inter_host;
  const double nics = std::max(1.0, std::min(params.nics_per_host, double(ranks_per_host)));
  network.bandwidth_Bps *= nics;
  network.burst_bytes *= nics;
  return network;
}

Prediction predict_layer(const Params& params, const Layout& layout, const LayerShape& shape,
                         const std::vector<double>& expert_shares) {
  const int64_t P = layout.ranks, per_host = std::min(layout.ranks_per_host, P);
  const int64_t hosts = (P + per_host - 1) / per_host, local = shape.experts / P;
  TRIAGE_ASSERT(int64_t(expert_shares.size()) == shape.experts && shape.experts % P == 0, "layout");
  if (hosts > 1 && params.inter_host.bandwidth_Bps <= 0)
    throw Error("the layout spans " + std::to_string(hosts) +
                " hosts but the params have no links.inter_host");
  // Ranks sharing a host beyond its slots run proportionally slower.
  const double slow = std::max(1.0, double(per_host) / params.slots_per_host);
  const double T = double(shape.tokens_per_rank), K = double(shape.top_k),
               D = double(shape.d_model), H = double(shape.d_expert), E = double(shape.experts);
  const double row_bytes = D * params.activation_bytes, assignments = T * K;
  TRIAGE_ASSERT(
      shape.rows_per_token_to_rank.empty() || int64_t(shape.rows_per_token_to_rank.size()) == P,
      "rows per token for " << shape.rows_per_token_to_rank.size() << " of " << P << " ranks");

  std::vector<double> rank_share(P, 0.0), to_rank(P, 0.0), to_host(hosts, 0.0);
  std::vector<int64_t> host_ranks(hosts, 0);
  for (int64_t e = 0; e < shape.experts; ++e) rank_share[e / local] += expert_shares[e];
  double to_all = 0;
  for (int64_t r = 0; r < P; ++r) {
    to_rank[r] =
        shape.rows_per_token_to_rank.empty() ? K * rank_share[r] : shape.rows_per_token_to_rank[r];
    to_host[r / per_host] += to_rank[r];
    to_all += to_rank[r];
    ++host_ranks[r / per_host];
  }
  // One row exchange: the busiest rank's on-host rows and the busiest host's off-host rows.
  double busiest_intra = 0, busiest_inter = 0;
  for (int64_t r = 0; r < P; ++r) {
    const int64_t h = r / per_host;
    const double send = T * (to_host[h] - to_rank[r]);
    const double receive = double(host_ranks[h] - 1) * T * to_rank[r];
    busiest_intra = std::max({busiest_intra, send, receive});
  }
  for (int64_t h = 0; h < hosts; ++h) {
    const double send = double(host_ranks[h]) * T * (to_all - to_host[h]);
    const double receive = double(P - host_ranks[h]) * T * to_host[h];
    busiest_inter = std::max({busiest_inter, send, receive});
  }
  const Link network = host_network(params, per_host);
  // Hierarchical: the network carries one row per (token, destination host) between peers of
  // one place, then each destination fans its units out to its host's ranks. A peer receives
  // the units of one source rank per host, so the fan-out moves hosts x a rank's units.
  const bool two_levels = shape.hierarchical && hosts > 1;
  if (two_levels) {
    TRIAGE_ASSERT(int64_t(shape.rows_per_token_to_host.size()) == hosts &&
                      int64_t(shape.rows_per_token_to_rank.size()) == P,
                  "hierarchical needs rows per token to every host and rank");
    busiest_inter = busiest_intra = 0;
    double to_all_hosts = 0;
    for (double rows : shape.rows_per_token_to_host) to_all_hosts += rows;
    for (int64_t h = 0; h < hosts; ++h) {
      const double to_h = shape.rows_per_token_to_host[h];
      busiest_inter = std::max({busiest_inter, double(host_ranks[h]) * T * (to_all_hosts - to_h),
                                double(P - host_ranks[h]) * T * to_h});
    }
    for (int64_t r = 0; r < P; ++r) {
      const int64_t h = r / per_host;
      busiest_intra = std::max({busiest_intra, double(hosts) * T * (to_host[h] - to_rank[r]),
                                double(hosts) * double(host_ranks[h] - 1) * T * to_rank[r]});
    }
  }
  // Ranks sharing cores: collectives as measured among ranks sharing them (when measured).
  // Otherwise on-host copies slow down with the cores' sharing.
  Link first = hosts > 1 ? network : params.intra_host, intra = params.intra_host;
  double copy_slowdown = slow;
  if (slow > 1.0 && params.oversubscribed.latency_s > 0) {
    first.latency_s = std::max(first.latency_s, params.oversubscribed.latency_s);
    intra = params.oversubscribed;
    copy_slowdown = 1.0;
  }
  double row_exchange = 0, count_exchange = 0;
  const double intra_s = copy_slowdown * busiest_intra * row_bytes / intra.bandwidth_Bps;
  if (two_levels) {
    // The levels run one after the other, each with its own latency. The fan-out moves
    // bytes between ranks of one host alone: shared-memory copies, slower by the cores'
    // sharing, but waiting for the scheduler like any collective among ranks sharing cores.
    const double fan_out_latency = per_host == 1 ? 0.0  // a host of one rank: no collective
                                   : slow > 1.0 && params.oversubscribed.latency_s > 0
                                       ? params.oversubscribed.latency_s
                                       : params.intra_host.latency_s;
    count_exchange = first.latency_s + fan_out_latency;
    row_exchange = count_exchange + shaped_s(busiest_inter * row_bytes, network) +
                   slow * busiest_intra * row_bytes / params.intra_host.bandwidth_Bps;
  } else if (P > 1) {  // one exchange: on-host and off-host bytes move at once
    count_exchange = first.latency_s;
    row_exchange =
        first.latency_s +
        std::max(intra_s, hosts > 1 ? shaped_s(busiest_inter * row_bytes, network) : 0.0);
  }

  const double copy_bytes = 2.0 * assignments * row_bytes;  // read + write every routed row
  std::vector<double> rows_of(P);                           // rows each rank's experts receive
  double mean_rows = 0;
  for (int64_t r = 0; r < P; ++r) {
    rows_of[r] = double(P) * assignments * rank_share[r];
    mean_rows += rows_of[r] / double(P);
  }
  const double expert_flops_per_row = 2.0 * double(shape.expert_matrices) * D * H;
  // The experts' segment: each host's ranks share its slots; the slowest host decides.
  // "experts" is the time had every rank the mean load; "wait" what the skew adds.
  auto experts_segment = [&](double flops_per_row,
                             const std::vector<std::pair<double, double>>& curve, double fallback) {
    auto seconds = [&](double rows) {
      return rows * flops_per_row / rate_at(curve, rows / double(local), fallback);
    };
    double finish = 0;
    for (int64_t h = 0; h < hosts; ++h) {
      std::vector<double> work;
      for (int64_t r = h * per_host; r < std::min(P, (h + 1) * per_host); ++r)
        work.push_back(seconds(rows_of[r]));
      finish = std::max(finish, shared_finish_s(work, params.slots_per_host));
    }
    const double balanced = slow * seconds(mean_rows);
    return std::pair<double, double>{balanced, std::max(0.0, finish - balanced)};
  };
  const auto [experts_forward, forward_wait] = experts_segment(
      expert_flops_per_row, params.expert_forward_by_rows, params.expert_forward_flops_per_s);
  const auto [experts_backward, backward_wait] =
      experts_segment(2.0 * expert_flops_per_row, params.expert_backward_by_rows,
                      params.expert_backward_flops_per_s);
  Prediction out;
  auto add = [&](Phase phase, double seconds) {
    out.phases.emplace_back(phase_label(phase), seconds);
    out.total_s += seconds;
    if (phase_category(phase) == PhaseCategory::kExchange) out.exchange_s += seconds;
  };
  add(Phase::kRoute, slow * 2.0 * T * D * E / params.route_flops_per_s);
  add(Phase::kSortPack, slow * copy_bytes / params.pack_bytes_per_s);
  add(Phase::kCountExchange, count_exchange);
  add(Phase::kWait, forward_wait);
  // A row per choice (per_choice, unchunked) keeps a rank's own rows home and computes them
  // while the others' travel: the exchanges into the experts (dispatch, and the gradients
  // coming back in backward) wait only for what outlasts that share of the experts.
  const bool per_choice = shape.rows_per_token_to_rank.empty() && !two_levels && P > 1;
  const double own_share = 1.0 / double(P);
  auto into_experts = [&](double experts_s) {
    return per_choice ? std::max(count_exchange, row_exchange - own_share * experts_s)
                      : row_exchange;
  };
  add(Phase::kDispatchRows, into_experts(experts_forward));
  add(Phase::kExperts, experts_forward);
  add(Phase::kCombineRows, row_exchange);
  add(Phase::kCombine, slow * copy_bytes / params.combine_bytes_per_s);
  add(Phase::kCombineBwd, slow * copy_bytes / params.combine_backward_bytes_per_s);
  add(Phase::kCombineRowsBwd, into_experts(experts_backward));
  add(Phase::kWaitBwd, backward_wait);
  add(Phase::kExpertsBwd, experts_backward);
  add(Phase::kDispatchRowsBwd, row_exchange);
  add(Phase::kSortPackRouteBwd, slow * copy_bytes / params.pack_route_backward_bytes_per_s);
  add(Phase::kRouterAllReduce, allreduce_s(D * E * params.gradient_bytes, P, first));
  return out;
}

double dense_step_flops(const StepShape& shape) {
  const double T = double(shape.moe.tokens_per_rank), D = double(shape.moe.d_model);
  // Forward FLOPs; backward is twice forward, so forward + backward is three times.
  // q, k and v (k and v narrower under grouped-query attention), the output projection,
  // scores and their weighted sum.
  const double A = D * shape.attention_share;
  const double attention =
      2.0 * T * D * A * (2.0 + 2.0 * shape.kv_share) + 4.0 * T * double(shape.seq_len) * A;
  const double dense_ffn = 6.0 * T * D * double(shape.dense_ffn_hidden);
  const double shared_experts = 6.0 * T * D * double(shape.shared_expert_hidden);
  const double head = 2.0 * T * D * double(shape.vocab);
  return 3.0 * (double(shape.layers) * attention + double(shape.dense_ffn_layers) * dense_ffn +
                double(shape.moe_layers) * shared_experts + head);
}

SyncPrediction predict_sync(const Params& params, const Layout& layout, const StepShape& shape,
                            double compute_s) {
  const int64_t P = layout.ranks, per_host = std::min(layout.ranks_per_host, P);
  const int64_t ep = layout.expert_parallel > 0 ? layout.expert_parallel : P;
  const bool multi_host = P > per_host;
  const double slow = std::max(1.0, double(per_host) / params.slots_per_host);
  const Link network = host_network(params, per_host);
  const Link& slowest_link = multi_host ? network : params.intra_host;
  // Replicated gradients over the world (one ring: each host's links carry one flow);
  // each expert's over its P / EP copies, which sit on other hosts whenever an EP group
  // fills its hosts. Then every rank of a host is in a different expert-DP group and all of
  // them reduce at once: the host's links are shared by per_host flows.
  Link expert_link = params.intra_host;
  if (ep >= per_host && P > ep) {
    expert_link = network;
    expert_link.bandwidth_Bps /= double(per_host);
    expert_link.burst_bytes /= double(per_host);
  }
  const double wire =
      shape.gradient_wire_bytes > 0 ? shape.gradient_wire_bytes : params.gradient_bytes;
  const double replicated = shape.replicated_parameters, experts = shape.expert_parameters_per_rank;
  // An all-reduce is a reduce-scatter and an all-gather of equal cost (ordered_reduce.h).
  const double reduce_share = shape.shard_optimizer ? 0.5 : 1.0;
  SyncPrediction out;
  out.reduce_s = reduce_share * (allreduce_s(replicated * wire, P, slowest_link) +
                                 allreduce_s(experts * wire, P / ep, expert_link));
  double gather_s = 0;
  if (shape.shard_optimizer)
    gather_s = 0.5 * (allreduce_s(replicated * shape.parameter_bytes, P, slowest_link) +
                      allreduce_s(experts * shape.parameter_bytes, P / ep, expert_link));
  double reduce_exposed_s = out.reduce_s;
  if (shape.overlap_grad_sync && out.reduce_s > 0) {
    const double bytes = (replicated + experts) * wire;
    const double last_share = std::min(1.0, shape.grad_bucket_bytes / std::max(1.0, bytes));
    const double backward_s = compute_s * (shape.recompute_blocks ? 3.0 / 4.0 : 2.0 / 3.0);
    reduce_exposed_s = std::max(last_share * out.reduce_s, out.reduce_s - backward_s);
  }
  out.exposed_s = reduce_exposed_s + gather_s;
  // Sharded, each rank updates 1/P of the replicated and 1/(P/EP) of its experts' state.
  const double updated = shape.shard_optimizer ? replicated / double(P) +
                                                     experts / double(std::max<int64_t>(1, P / ep))
                                               : replicated + experts;
  out.optimizer_s = slow * kAdamWBytesPerParameter * updated / params.optimizer_bytes_per_s;
  return out;
}

Prediction predict_step(const Params& params, const Layout& layout, const StepShape& shape,
                        const std::vector<double>& expert_shares) {
  const int64_t P = layout.ranks, per_host = std::min(layout.ranks_per_host, P);
  const int64_t ep = layout.expert_parallel > 0 ? layout.expert_parallel : P;
  const double slow = std::max(1.0, double(per_host) / params.slots_per_host);
  const double dense_flops = dense_step_flops(shape);
  Prediction layer = predict_layer(params, {ep, per_host, ep}, shape.moe, expert_shares);

  Prediction out;
  const double moe_compute = double(shape.moe_layers) * (layer.total_s - layer.exchange_s);
  double compute_s = slow * dense_flops / params.dense_flops_per_s + moe_compute;
  double exchange_s = double(shape.moe_layers) * layer.exchange_s;
  if (shape.recompute_blocks) {  // forward again: a third of compute, half the exchanges
    compute_s *= 4.0 / 3.0;
    exchange_s *= 1.5;
  } else if (shape.recompute_experts) {  // all but the down projection's forward GEMM
    double experts_s = 0;
    for (const auto& [label, seconds] : layer.phases)
      if (label == phase_label(Phase::kExperts)) experts_s = seconds;
    const double matrices = double(shape.moe.expert_matrices);
    compute_s += double(shape.moe_layers) * experts_s * (matrices - 1) / matrices;
  }
  // The micro-batches run one after another; the sync can hide behind the last's backward.
  const double micro_batches = double(std::max<int64_t>(1, shape.micro_batches));
  auto category = [](PhaseCategory c) { return std::string(category_label(c)); };
  out.phases.emplace_back(category(PhaseCategory::kCompute), micro_batches * compute_s);
  out.phases.emplace_back(category(PhaseCategory::kExchange), micro_batches * exchange_s);
  const SyncPrediction sync = predict_sync(params, layout, shape, compute_s);
  out.phases.emplace_back(category(PhaseCategory::kGradientSync), sync.exposed_s);
  out.phases.emplace_back(category(PhaseCategory::kOptimizer), sync.optimizer_s);
  for (const auto& [phase, seconds] : out.phases) out.total_s += seconds;
  out.exchange_s = out.phases[1].second;
  return out;
}

}  // namespace triage::model
