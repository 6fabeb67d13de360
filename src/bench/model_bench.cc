// `triage bench model --params FILE ...`: the scaling model's two uses.
//   --check RESULTS.jsonl      predicts every `bench layer` point in the file (its layout,
//                              shape and routing) and reports the error against what was
//                              measured, point by point, and which points miss 15%.
//   CONFIG --ranks 8,16,...    predicts a training step of CONFIG at each world size, with
//                              its breakdown, exchange share and weak-scaling efficiency.
// One process, no MPI: the model is arithmetic. Routing skew is measured by running the
// layer's own router (and routing override) on random tokens.
#include "bench/model_bench.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <sstream>

#include "bench/harness.h"
#include "bench/memory_model.h"
#include "bench/options.h"
#include "bench/scaling_model.h"
#include "bench/step_shape.h"
#include "bench/timing.h"
#include "common/error.h"
#include "common/json_number.h"
#include "config/config.h"
#include "moe/host_exchange.h"
#include "moe/moe_layer.h"
#include "moe/router.h"
#include "moe/routing_override.h"
#include "moe/token_exchange.h"

namespace triage {
namespace {

constexpr double kMissTarget = 0.15;

// The random router's choice for 4096 random tokens: the skew `uniform` routing has, and
// the scores a routing override reads. Computed once per layer shape.
// groups, topk_groups: group-limited routing (0: none).
RouterOutput sample_router(int64_t d_model, int64_t experts, int64_t top_k, uint64_t seed,
                           int64_t groups = 0, int64_t topk_groups = 0) {
  c10::NoGradGuard no_grad;
  MoeConfig c;
  c.num_experts = experts;
  c.top_k = top_k;
  c.num_groups = groups;
  c.topk_groups = topk_groups;
  Router router(c, d_model, at::kFloat, at::make_generator<at::CPUGeneratorImpl>(seed),
                std::max<int64_t>(groups, 1));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(99);
  return router.forward(at::randn({4096, d_model}, gen), true);
}

struct SampledRouting {
  // See model::LayerShape.
  std::vector<double> expert_shares, rows_per_token_to_rank, rows_per_token_to_host;
};

// The routing the model sees: each expert's share of the sampled assignments under `rule`
// (kNone: the router's own; replay draws from recorded step `step`) and, under per_rank
// dispatch, the share of the tokens that reach each EP rank (the rows a token sends it).
// ranks_per_host > 0: also the share reaching each host of that many consecutive EP ranks
// (the hierarchical exchange's rows), and the ranks' shares whatever the dispatch.
SampledRouting sampled_routing(const RouterOutput& sample, const RoutingOverride& rule,
                               uint64_t seed, int64_t ep_size, bool per_rank, int64_t step = 0,
                               int64_t ranks_per_host = 0) {
  const int64_t experts = sample.scores_TE.size(1), per_ep_rank = experts / ep_size;
  const at::Tensor chosen =
      override_routing(rule, sample.experts_TK, sample.scores_TE, 0, seed, per_ep_rank, step);
  auto shares = [](const at::Tensor& counts, double total) {
    const at::Tensor share = counts.to(at::kDouble) / total;
    return std::vector<double>(share.data_ptr<double>(), share.data_ptr<double>() + share.numel());
  };
  SampledRouting routing;
  routing.expert_shares =
      shares(at::bincount(chosen.reshape(-1), {}, experts), double(chosen.numel()));
  if (per_rank || ranks_per_host > 0)
    routing.rows_per_token_to_rank =
        shares(tokens_reaching_rank(chosen, {}, per_ep_rank, ep_size), double(chosen.size(0)));
  if (ranks_per_host > 0) {
    const int64_t per_host = std::min(ranks_per_host, ep_size);
    std::vector<int> host_of_rank;
    for (int64_t r = 0; r < ep_size; ++r) host_of_rank.push_back(int(r / per_host));
    routing.rows_per_token_to_host =
        shares(tokens_reaching_host(chosen, {}, per_ep_rank, host_of_rank,
                                    (ep_size + per_host - 1) / per_host),
               double(chosen.size(0)));
  }
  return routing;
}

std::string percent(double fraction) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << std::showpos << 100.0 * fraction << "%";
  return s.str();
}

// One measured point (a `bench layer` or `bench step` JSON line) and its prediction.
struct Point {
  int64_t ranks = 0, hosts = 1, experts = 0, tokens_per_rank = 0;
  std::string routing;
  double measured_s = 0, measured_exchange_s = 0, predicted_s = 0;
  model::Prediction prediction;
  nlohmann::json measured_phases;
};

Point layer_point(const nlohmann::json& r, const model::Params& params, const std::string& where) {
  auto integer = [&](const char* key) { return whole_number<int64_t>(r.at(key), where + key); };
  Point point;
  point.ranks = integer("ranks");
  point.hosts = std::max<int64_t>(1, integer("hosts"));
  const model::Layout layout{point.ranks, point.ranks / point.hosts, 0};
  model::LayerShape shape{integer("tokens_per_rank"), integer("d_model"), integer("d_expert"),
                          integer("experts"), integer("top_k")};
  point.routing = r.at("routing");
  // A replayed run changes skew every step: predict each timed step, take the median.
  std::vector<double> totals;
  const int64_t first = r.contains("warmup") ? integer("warmup") : 0,
                steps = point.routing.rfind("replay:", 0) == 0 ? integer("reps") : 1;
  // Seed 7: the layer seed `bench layer` uses, so the sampled router is the measured one; the
  // groups of node-limited routing are the hosts.
  const int64_t topk_groups = r.value("topk_groups", int64_t(0));
  const RouterOutput sample = sample_router(shape.d_model, shape.experts, shape.top_k, 7,
                                            topk_groups > 0 ? point.hosts : 0, topk_groups);
  shape.hierarchical = r.value("exchange", "flat") == "hierarchical";
  const RoutingOverride rule =
      bench::parse_bench_routing(point.routing, shape.experts, layout.ranks, shape.top_k);
  // Records from before moe.dispatch sent a row per choice.
  const bool per_rank = r.value("dispatch", "per_choice") == "per_rank";
  for (int64_t step = first; step < first + steps; ++step) {
    SampledRouting routing = sampled_routing(sample, rule, 7, layout.ranks, per_rank, step,
                                             shape.hierarchical ? layout.ranks_per_host : 0);
    shape.rows_per_token_to_rank = std::move(routing.rows_per_token_to_rank);
    shape.rows_per_token_to_host = std::move(routing.rows_per_token_to_host);
    point.prediction = model::predict_layer(params, layout, shape, routing.expert_shares);
    totals.push_back(point.prediction.total_s);
  }
  point.experts = shape.experts;
  point.tokens_per_rank = shape.tokens_per_rank;
  point.predicted_s = bench::median(totals);
  point.measured_s = r.at("contenders").at("moe").at("median_s");
  point.measured_exchange_s = r.value("phased_exchange_s", 0.0);
  point.measured_phases = r.at("phases");
  return point;
}

// A whole training step of the recorded config and overrides, at the recorded layout.
Point step_point(const nlohmann::json& r, const model::Params& params, const std::string& where) {
  auto integer = [&](const char* key) { return whole_number<int64_t>(r.at(key), where + key); };
  const Config config = load_config(r.at("config").get<std::string>(),
                                    r.value("overrides", std::vector<std::string>{}));
  Point point;
  point.ranks = integer("ranks");
  point.hosts = r.contains("hosts") ? std::max<int64_t>(1, integer("hosts")) : 1;
  const int64_t ep = config.parallel.expert, E = config.moe.num_experts;
  point.experts = E;
  point.tokens_per_rank =
      config.train.batch_size * config.data.seq_len / point.ranks;  // per micro-batch
  const model::Layout layout{point.ranks, point.ranks / point.hosts, ep};
  model::StepShape shape = step_shape(config, point.tokens_per_rank, ep);
  const std::string& rule_text = config.moe.routing_override.text;
  point.routing = rule_text.empty() || rule_text == "none" ? "uniform" : rule_text;
  const uint64_t seed = uint64_t(config.train.seed);
  const RouterOutput sample =
      sample_router(config.model.d_model, E, config.moe.top_k, seed,
                    config.moe.topk_groups > 0 ? config.moe.num_groups : 0, config.moe.topk_groups);
  const RoutingOverride rule = bench::parse_bench_routing(point.routing, E, ep, config.moe.top_k);
  // moe.exchange as the job resolved it on this layout (choose_exchange): hierarchical
  // when stated, or under auto on CPUs when the EP group spans hosts of several ranks.
  const bool on_gpu = config.train.device == DeviceKind::kCuda;
  const int64_t ep_per_host = std::min(layout.ranks_per_host, ep);
  shape.moe.hierarchical =
      config.moe.exchange == Exchange::kHierarchical ||
      (config.moe.exchange == Exchange::kAuto && !on_gpu && ep_per_host > 1 && ep > ep_per_host);
  SampledRouting routing =
      sampled_routing(sample, rule, seed, ep, dispatches_per_rank(config.moe, on_gpu), 0,
                      shape.moe.hierarchical ? ep_per_host : 0);
  shape.moe.rows_per_token_to_rank = std::move(routing.rows_per_token_to_rank);
  shape.moe.rows_per_token_to_host = std::move(routing.rows_per_token_to_host);
  point.prediction = model::predict_step(params, layout, shape, routing.expert_shares);
  point.predicted_s = point.prediction.total_s;
  point.measured_s = r.at("step").at("median_s");
  for (const auto& category : r.at("categories"))
    if (category.at("category") == "exchange")
      point.measured_exchange_s = category.at("mean_over_ranks_s");
  point.measured_phases = r.at("categories");
  return point;
}

int check(const BenchModelOptions& o, const model::Params& params) {
  std::ifstream in(o.check);
  if (!in) throw Error(o.check + ": cannot read the measured results");
  std::vector<nlohmann::ordered_json> rows;
  std::string line;
  int misses = 0;
  std::cout << "# scaling model vs measurement: " << o.check << " with " << o.params
            << " (layers: forward + backward, median of slowest rank; steps: whole steps)\n"
            << std::left << std::setw(6) << "what" << std::setw(6) << "ranks" << std::setw(6)
            << "hosts" << std::setw(8) << "experts" << std::setw(16) << "routing" << std::right
            << std::setw(12) << "measured ms" << std::setw(13) << "predicted ms" << std::setw(9)
            << "error" << std::setw(14) << "exchange ms" << std::setw(10) << "model"
            << "\n";
  for (int64_t number = 1; std::getline(in, line); ++number) {
    const std::string where = o.check + ":" + std::to_string(number) + ": ";
    const nlohmann::json r = nlohmann::json::parse(line, nullptr, false);
    const std::string kind = r.is_object() ? r.value("benchmark", "") : "";
    if (kind != "layer" && kind != "step")
      throw Error(where + "expected a `triage bench layer` or `triage bench step` JSON line");
    const Point p = kind == "layer" ? layer_point(r, params, where) : step_point(r, params, where);
    const double error = p.predicted_s / p.measured_s - 1.0;
    misses += std::abs(error) > kMissTarget;
    std::cout << std::left << std::setw(6) << kind << std::setw(6) << p.ranks << std::setw(6)
              << p.hosts << std::setw(8) << p.experts << std::setw(16) << p.routing << std::right
              << std::fixed << std::setprecision(2) << std::setw(12) << 1e3 * p.measured_s
              << std::setw(13) << 1e3 * p.predicted_s << std::setw(9) << percent(error)
              << std::setw(14) << 1e3 * p.measured_exchange_s << std::setw(10)
              << 1e3 * p.prediction.exchange_s << (std::abs(error) > kMissTarget ? "  MISS" : "")
              << "\n";
    nlohmann::ordered_json phases;
    for (const auto& [phase, s] : p.prediction.phases) phases[phase] = s;
    rows.push_back({{"benchmark", kind},
                    {"ranks", p.ranks},
                    {"hosts", p.hosts},
                    {"experts", p.experts},
                    {"tokens_per_rank", p.tokens_per_rank},
                    {"routing", p.routing},
                    {"measured_s", p.measured_s},
                    {"predicted_s", p.predicted_s},
                    {"error", error},
                    {"predicted_phases_s", phases},
                    {"measured_phases", p.measured_phases}});
  }
  std::cout << rows.size() << " points, " << misses << " beyond " << 100 * kMissTarget << "%\n";
  if (!o.out.empty()) {
    std::ofstream file(o.out);
    for (const auto& row : rows) file << row.dump() << "\n";
    if (!file) throw Error(o.out + ": cannot write the comparison");
  }
  return 0;
}

int project(const BenchModelOptions& o, const model::Params& params) {
  Config config = load_config(o.config_path, o.overrides);
  const int64_t E = config.moe.num_experts;
  // A projection is of GPUs (the stated cluster's), where moe.dispatch auto sends a row per
  // choice.
  const bool hierarchical = o.exchange == "hierarchical";
  const bool per_rank = hierarchical || dispatches_per_rank(config.moe, /*on_gpu=*/true);
  const std::string dispatch = per_rank ? "per_rank" : "per_choice";
  nlohmann::ordered_json result = {{"config", o.config_path},
                                   {"dispatch", dispatch},
                                   {"exchange", o.exchange},
                                   {"node_limit", o.node_limit},
                                   {"nics_per_host", params.nics_per_host},
                                   {"params", o.params},
                                   {"ranks_per_host", o.ranks_per_host},
                                   {"tokens_per_rank", o.tokens_per_rank},
                                   {"routing", o.routing},
                                   {"assumptions", params.assumptions}};
  std::cout << "# projected training step: " << o.config_path << ", " << o.tokens_per_rank
            << " tokens per rank, " << o.ranks_per_host << " ranks per host, routing " << o.routing
            << ", dispatch " << dispatch << ", exchange " << o.exchange << ", node limit "
            << (o.node_limit > 0 ? std::to_string(o.node_limit) + " host(s)" : "none") << ", "
            << params.nics_per_host << " NIC(s) per host\n"
            << std::right << std::setw(7) << "ranks" << std::setw(5) << "EP" << std::setw(12)
            << "step ms" << std::setw(12) << "compute" << std::setw(12) << "exchange"
            << std::setw(12) << "grad sync" << std::setw(12) << "optimizer" << std::setw(10)
            << "exch %" << std::setw(12) << "efficiency"
            << "\n";
  const uint64_t seed = uint64_t(config.train.seed);
  // Checked against the largest EP group there can be (E ranks); each size's below.
  const RoutingOverride rule = bench::parse_bench_routing(o.routing, E, E, config.moe.top_k);
  double first_step = 0;
  const double runtime = o.runtime_gb >= 0 ? o.runtime_gb * double(1ull << 30)
                                           : default_runtime_bytes(config),
               device = o.device_gb * double(1ull << 30);
  std::vector<MemoryEstimate> memories;
  for (int64_t ranks : o.ranks) {
    const int64_t ep = std::gcd(ranks, E);  // the largest EP group that divides both
    model::Layout layout{ranks, std::min(o.ranks_per_host, ranks), ep};
    model::StepShape shape = step_shape(config, o.tokens_per_rank, ep);
    // Node-limited routing: the groups are the EP group's hosts, when it spans more than the
    // limit; the router is sampled under that limit.
    const int64_t ep_hosts = (ep + layout.ranks_per_host - 1) / layout.ranks_per_host;
    const bool limited = o.node_limit > 0 && ep_hosts > o.node_limit && E % ep_hosts == 0 &&
                         config.moe.top_k <= o.node_limit * (E / ep_hosts);
    const RouterOutput sample = sample_router(config.model.d_model, E, config.moe.top_k, seed,
                                              limited ? ep_hosts : 0, limited ? o.node_limit : 0);
    shape.moe.hierarchical = hierarchical;
    if (rule.kind == RoutingOverride::Kind::kEmptyRank && rule.rank >= ep)
      throw Error("--routing " + o.routing + ": expected an EP rank below " + std::to_string(ep) +
                  " at " + std::to_string(ranks) + " ranks");
    SampledRouting routing = sampled_routing(sample, rule, seed, ep, per_rank, 0,
                                             hierarchical ? layout.ranks_per_host : 0);
    shape.moe.rows_per_token_to_rank = std::move(routing.rows_per_token_to_rank);
    shape.moe.rows_per_token_to_host = std::move(routing.rows_per_token_to_host);
    const model::Prediction p = model::predict_step(params, layout, shape, routing.expert_shares);
    if (first_step == 0) first_step = p.total_s;
    const double efficiency = first_step / p.total_s;  // weak scaling: same tokens per rank
    std::cout << std::setw(7) << ranks << std::setw(5) << ep << std::fixed << std::setprecision(1)
              << std::setw(12) << 1e3 * p.total_s;
    nlohmann::ordered_json row = {{"ranks", ranks}, {"expert_parallel", ep}, {"step_s", p.total_s}};
    for (const auto& [phase, s] : p.phases) {
      std::cout << std::setw(12) << 1e3 * s;
      row["phases_s"][phase] = s;
    }
    std::cout << std::setw(9) << 100.0 * p.exchange_s / p.total_s << "%" << std::setw(12)
              << std::setprecision(3) << efficiency << "\n";
    row["exchange_share"] = p.exchange_s / p.total_s;
    row["weak_scaling_efficiency"] = efficiency;
    const MemoryEstimate memory = estimate_memory(config, {ranks, ep, runtime, o.tokens_per_rank});
    memories.push_back(memory);
    row["memory_bytes"] = {{"parameters", memory.parameters},
                           {"gradients", memory.gradients},
                           {"gradient_sync_buffers", memory.sync_buffers},
                           {"optimizer", memory.optimizer},
                           {"optimizer_step", memory.optimizer_step},
                           {"activations", memory.activations},
                           {"exchange_receive_buffers", memory.receive_buffers},
                           {"runtime", memory.runtime},
                           {"total", memory.total()}};
    if (o.device_gb > 0) row["fits_device"] = memory.total() <= device;
    result["points"].push_back(row);
  }
  std::cout << "# memory per rank (GiB) at " << o.tokens_per_rank
            << " tokens per rank, train.recompute " << name_of(config.train.recompute)
            << ", shard_optimizer " << (config.train.shard_optimizer ? "true" : "false") << "\n"
            << std::setw(7) << "ranks" << std::setw(8) << "params" << std::setw(8) << "grads"
            << std::setw(8) << "sync" << std::setw(8) << "optim" << std::setw(8) << "activ"
            << std::setw(9) << "runtime" << std::setw(8) << "total"
            << (o.device_gb > 0 ? "  fits " + bytes_text(device) : "") << "\n";
  for (size_t i = 0; i < memories.size(); ++i) {
    const MemoryEstimate& m = memories[i];
    const double gib = double(1ull << 30);
    std::cout << std::setw(7) << o.ranks[i] << std::fixed << std::setprecision(2);
    for (double bytes :
         {m.parameters, m.gradients, m.sync_buffers, m.optimizer + m.optimizer_step, m.activations})
      std::cout << std::setw(8) << bytes / gib;
    std::cout << std::setw(9) << m.runtime / gib << std::setw(8) << m.total() / gib;
    if (o.device_gb > 0) std::cout << "  " << (m.total() <= device ? "yes" : "no");
    std::cout << "\n";
  }
  for (const std::string& a : params.assumptions) std::cout << "# assumes: " << a << "\n";
  if (!o.out.empty()) bench::write_result(o.out, result);
  return 0;
}

}  // namespace

CLI::App* add_model_bench(CLI::App& bench, BenchModelOptions& o) {
  CLI::App* m = bench.add_subcommand(
      "model", "Scaling model: check it against bench layer results, or project a config");
  m->add_option("--params", o.params, "Params file (from `triage bench calibrate`, or stated)")
      ->required()
      ->check(CLI::ExistingFile);
  m->add_option("--check", o.check, "bench layer results (JSON lines) to predict and compare")
      ->check(CLI::ExistingFile);
  bench::add_config_options(*m, o.config_path, o.overrides, false,
                            "YAML config whose training step to project");
  m->add_option("--ranks", o.ranks, "World sizes to project (comma-separated)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  m->add_option("--ranks-per-host", o.ranks_per_host, "Ranks (GPUs) per host")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  m->add_option("--tokens-per-rank", o.tokens_per_rank,
                "Tokens each rank processes per micro-batch (a step is the config's "
                "train.grad_accum_steps of them)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  m->add_option("--device-gb", o.device_gb,
                "Device memory per rank (GB) to check the memory estimate against; 0: no check")
      ->check(CLI::NonNegativeNumber);
  m->add_option("--runtime-gb", o.runtime_gb,
                "Memory the runtime holds before any tensor (default: 0.375 on a CPU, 2 on a GPU)")
      ->check(CLI::NonNegativeNumber);
  m->add_option("--routing", o.routing, "uniform (the random router) or a moe.routing_override")
      ->capture_default_str();
  m->add_option("--exchange", o.exchange,
                "Projected exchange: flat (the config's dispatch on a GPU) | hierarchical (one "
                "network row per token and host, then per_rank on the host)")
      ->check(CLI::IsMember({"flat", "hierarchical"}))
      ->capture_default_str();
  m->add_option("--node-limit", o.node_limit,
                "Node-limited routing: each token's experts on at most this many of the EP "
                "group's hosts (moe.num_groups: hosts, moe.topk_groups); 0 = the config's routing")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  m->add_option("--out", o.out, "Write the result as JSON here");
  return m;
}

int run_model_bench(const BenchModelOptions& o) {
  if (o.check.empty() == o.config_path.empty())
    throw Error(
        "bench model: expected either --check RESULTS.jsonl or a CONFIG to project, not both or "
        "neither");
  const model::Params params = model::read_params(o.params);
  return o.check.empty() ? project(o, params) : check(o, params);
}

}  // namespace triage
