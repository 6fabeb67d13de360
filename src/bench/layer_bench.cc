// Each repetition draws a batch per rank, routes it once untimed (for the raw baseline's
// byte matrix), then runs four contenders in a rotating order so that machine drift hits
// them alike: the MoE layer, the dense FFN, the raw all-to-alls and the MoE layer again
// with phase_clock on. Every contender starts after a barrier and its time is each rank's
// own; the repetition's time is the slowest rank's. The phased run pays for its barriers,
// so its phases explain the layer's time and the unphased run is the headline.
//
// Active FLOPs per token (SwiGLU): K experts x 3 matrices x 2 D H, times 3 for forward +
// backward. The dense FFN's hidden width K H gives it the same FLOPs; it is data-parallel,
// so its time includes the all-reduce of its gradients, as the MoE time includes the
// router's. Legend: T tokens per rank, D width, H expert width, E experts, K top-k, P ranks.
#include "bench/layer_bench.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <array>
#include <iomanip>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <set>

#include "bench/harness.h"
#include "bench/link_probe.h"
#include "bench/timing.h"
#include "common/check.h"
#include "common/error.h"
#include "model/feed_forward.h"
#include "moe/host_exchange.h"
#include "moe/moe_layer.h"
#include "moe/token_exchange.h"
#include "parallel/agreement.h"
#include "parallel/mpi_communicator.h"
#include "parallel/phase_clock.h"
#include "parallel/placement.h"

namespace triage {
namespace {

using bench::gather_from_ranks;
using bench::median;

// The phases phase_clock reports for one layer call, forward then backward, in order.
constexpr std::array kPhases = {
    Phase::kRoute,           Phase::kSortPack,        Phase::kCountExchange, Phase::kWait,
    Phase::kDispatchRows,    Phase::kExperts,         Phase::kCombineRows,   Phase::kCombine,
    Phase::kCombineBwd,      Phase::kCombineRowsBwd,  Phase::kWaitBwd,       Phase::kExpertsBwd,
    Phase::kDispatchRowsBwd, Phase::kSortPackRouteBwd};

MoeConfig layer_config(const LayerBenchOptions& o) {
  MoeConfig c = bench::layer_config(o.shape);
  c.capacity_factor = o.capacity_factor;
  c.eval_capacity_factor = o.capacity_factor;
  c.expert_gemm = choice_from<ExpertGemm>(o.expert_gemm);
  c.exchange_chunks = o.exchange_chunks;
  c.dispatch = choice_from<Dispatch>(o.dispatch);
  c.exchange = choice_from<Exchange>(o.exchange);
  c.routing_override = o.routing == "uniform" ? "none" : o.routing;
  return c;
}

void check_options(const LayerBenchOptions& o, int ranks) {
  if (o.shape.experts % ranks != 0)
    throw Error("--experts " + std::to_string(o.shape.experts) +
                ": expected a multiple of the ranks (" + std::to_string(ranks) + ")");
  bench::check_layer_shape(o.shape);
  bench::parse_bench_routing(o.routing, o.shape.experts, ranks, o.shape.top_k);
}

// Summed over tokens: how many EP ranks other than `rank` hold one of the token's kept
// choices.
double other_ranks_per_token(const MoeOutput& routed, int64_t experts_per_rank, int ranks,
                             int rank) {
  const at::Tensor reach =
      tokens_reaching_rank(routed.routing.experts_TK, routed.keep_TK, experts_per_rank, ranks);
  return (reach.sum() - reach[rank]).item<double>();
}

// Summed over tokens: how many hosts other than this rank's hold one of the token's kept
// choices.
double other_hosts_per_token(const MoeOutput& routed, int64_t experts_per_rank,
                             const std::vector<int>& hosts, int rank) {
  const int64_t host_count = *std::max_element(hosts.begin(), hosts.end()) + 1;
  const at::Tensor reach = tokens_reaching_host(routed.routing.experts_TK, routed.keep_TK,
                                                experts_per_rank, hosts, host_count);
  return (reach.sum() - reach[hosts[size_t(rank)]]).item<double>();
}

void clear_grads(const ParameterList& params) {
  for (const auto& p : params) p.tensor.mutable_grad() = at::Tensor();
}

// One flat all-reduce of the gradients, as GradientSync does with one bucket.
void allreduce_grads(const ParameterList& params, Communicator& world) {
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.tensor.grad().defined()) grads.push_back(p.tensor.grad().reshape(-1));
  if (grads.empty()) return;
  at::Tensor flat = at::cat(grads);
  world.allreduce_sum_(flat);
}

int layer_bench(const LayerBenchOptions& o) {
  const bench::LayerShape& s = o.shape;
  auto world = make_mpi_communicator(MPI_COMM_WORLD);
  const int rank = world->rank(), ranks = world->size();
  const std::vector<RankPlacement> placements = place_ranks(o.threads, false);
  std::unique_ptr<MoeLayer> layer;
  const std::vector<int>& host_of_rank = world->hosts();
  const int host_count = *std::max_element(host_of_rank.begin(), host_of_rank.end()) + 1;
  ExchangeChoice exchange;
  agree([&] {  // option mistakes and unreadable replay runs are the same on every rank
    check_options(o, ranks);
    exchange = choose_exchange(layer_config(o).exchange, *world);
    MoeConfig config = layer_config(o);
    if (o.topk_groups > 0) {  // node-limited: the groups are the live hosts
      config.num_groups = host_count;
      config.topk_groups = o.topk_groups;
      if (o.topk_groups > host_count || s.top_k > o.topk_groups * (s.experts / host_count))
        throw Error("--topk-groups " + std::to_string(o.topk_groups) + ": expected at most the " +
                    std::to_string(host_count) + " host(s), holding at least top-k experts");
    }
    layer = std::make_unique<MoeLayer>(config, s.d_model, at::kFloat, 7, world.get(), world.get());
  });
  at::Generator init = at::make_generator<at::CPUGeneratorImpl>(11);
  FeedForward dense(s.d_model, s.top_k * s.d_expert, ExpertType::kSwiglu, kInitStd, at::kFloat,
                    init);
  const ParameterList moe_params = layer->parameters(), dense_params = dense.parameters();
  ParameterList router_params;
  for (const auto& p : moe_params)
    if (p.sharding == Sharding::kReplicated) router_params.push_back(p);

  // The current repetition's inputs and routing, set before its contenders run.
  at::Tensor x, upstream;
  int64_t first_token = 0;
  std::vector<int64_t> send_rows, recv_rows;
  at::Tensor raw_send, raw_recv, raw_back;
  phase_clock::Totals phases;

  auto moe_forward_backward = [&] {
    at::Tensor input = x.detach().requires_grad_(true);
    MoeOutput out = layer->forward(input, /*training=*/true, first_token);
    at::Tensor objective = (out.y * upstream).sum() + out.balance_loss + out.z_loss;
    phase_clock::enter(Phase::kCombineBwd);
    objective.backward();
    phase_clock::resume(std::nullopt);
    allreduce_grads(router_params, *world);
  };
  std::vector<bench::Contender> contenders = {
      {"moe", moe_forward_backward, {}, {}},
      {"dense",
       [&] {
         at::Tensor input = x.detach().requires_grad_(true);
         (dense.forward(input) * upstream).sum().backward();
         allreduce_grads(dense_params, *world);
       },
       {},
       {}},
      {"raw_alltoall",
       [&] {  // dispatch and combine, forward and backward: two round trips
         for (int trip = 0; trip < 2; ++trip) {
           bench::raw_alltoallv(raw_send.data_ptr<float>(), send_rows, raw_recv.data_ptr<float>(),
                                recv_rows, s.d_model);
           bench::raw_alltoallv(raw_recv.data_ptr<float>(), recv_rows, raw_back.data_ptr<float>(),
                                send_rows, s.d_model);
         }
       },
       {},
       {}},
      {"moe_phased",
       [&] {
         phase_clock::start({});
         moe_forward_backward();
         phases = phase_clock::stop();
       },
       {},
       {}},
  };

  std::vector<std::vector<double>> phase_mean(kPhases.size()), phase_max(kPhases.size());
  std::vector<double> received_max_over_mean, dropped_share, wire_rows_per_token,
      remote_ranks_per_token, network_rows_per_token, remote_hosts_per_token,
      network_messages_per_rank;
  for (int64_t rep = -o.repetitions.warmup; rep < o.repetitions.reps; ++rep) {
    const int64_t step = rep + o.repetitions.warmup;
    at::Generator gen =
        at::make_generator<at::CPUGeneratorImpl>(uint64_t(1000 + step * 7919 + rank));
    x = at::randn({s.tokens, s.d_model}, gen, at::kFloat);
    upstream = at::randn({s.tokens, s.d_model}, gen, at::kFloat);
    first_token = (step * ranks + rank) * s.tokens;
    layer->set_draw_clock(step);
    {  // The routing this repetition will see, for the raw baseline and the skew.
      c10::NoGradGuard no_grad;
      const MoeOutput routed = layer->forward(x, true, first_token);
      const MoeStats& stats = routed.stats;
      send_rows = stats.sent_rows_per_rank;  // the rows the exchange sends, under its dispatch
      recv_rows = world->alltoall(send_rows);
      // Rows that cross a link per token, as sent and as counted from the routing (each
      // token's distinct other ranks: what per_rank sends; top_k of them under per_choice).
      const std::vector<double> crossing = gather_from_ranks(double(stats.sent_rows_to_others));
      wire_rows_per_token.push_back(std::accumulate(crossing.begin(), crossing.end(), 0.0) /
                                    double(ranks * s.tokens));
      const std::vector<double> remote =
          gather_from_ranks(other_ranks_per_token(routed, s.experts / ranks, ranks, rank));
      remote_ranks_per_token.push_back(std::accumulate(remote.begin(), remote.end(), 0.0) /
                                       double(ranks * s.tokens));
      // What crosses the network: rows and messages to ranks on other hosts, against the
      // tokens' distinct other hosts counted from the routing.
      double network_rows = 0, messages = 0;
      for (int r = 0; r < ranks; ++r)
        if (host_of_rank[size_t(r)] != host_of_rank[size_t(rank)]) {
          network_rows += double(stats.sent_rows_per_rank[size_t(r)]);
          messages += stats.sent_rows_per_rank[size_t(r)] > 0;
        }
      const std::vector<double> network = gather_from_ranks(network_rows);
      network_rows_per_token.push_back(std::accumulate(network.begin(), network.end(), 0.0) /
                                       double(ranks * s.tokens));
      const std::vector<double> sent_messages = gather_from_ranks(messages);
      network_messages_per_rank.push_back(
          std::accumulate(sent_messages.begin(), sent_messages.end(), 0.0) / double(ranks));
      const std::vector<double> remote_hosts =
          gather_from_ranks(other_hosts_per_token(routed, s.experts / ranks, host_of_rank, rank));
      remote_hosts_per_token.push_back(
          std::accumulate(remote_hosts.begin(), remote_hosts.end(), 0.0) /
          double(ranks * s.tokens));
      const int64_t received = std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t(0));
      const std::vector<double> all = gather_from_ranks(double(received));
      const double mean = std::accumulate(all.begin(), all.end(), 0.0) / ranks;
      received_max_over_mean.push_back(mean > 0 ? *std::max_element(all.begin(), all.end()) / mean
                                                : 0.0);
      const std::vector<double> dropped = gather_from_ranks(double(stats.dropped));
      dropped_share.push_back(std::accumulate(dropped.begin(), dropped.end(), 0.0) /
                              double(ranks * s.tokens * s.top_k));
      const int64_t sent = std::accumulate(send_rows.begin(), send_rows.end(), int64_t(0));
      raw_send = at::randn({sent, s.d_model}, gen, at::kFloat);
      raw_recv = at::empty({received, s.d_model}, at::kFloat);
      raw_back = at::empty({sent, s.d_model}, at::kFloat);
    }
    bench::run_repetition(contenders, step, rep >= 0, world.get(), [&] {
      clear_grads(moe_params);
      clear_grads(dense_params);
    });
    if (rep >= 0) {
      for (size_t p = 0; p < kPhases.size(); ++p) {
        double mine = 0;
        for (const auto& [phase, seconds] : phases) {
          TRIAGE_ASSERT(std::find(kPhases.begin(), kPhases.end(), phase) != kPhases.end(),
                        "phase " << phase_label(phase) << " in a layer call");
          if (phase == kPhases[p]) mine = seconds;
        }
        const std::vector<double> all = gather_from_ranks(mine);
        phase_mean[p].push_back(std::accumulate(all.begin(), all.end(), 0.0) / ranks);
        phase_max[p].push_back(*std::max_element(all.begin(), all.end()));
      }
    }
    if (rank == 0)
      bench::show_progress("layer", step + 1, o.repetitions.warmup + o.repetitions.reps);
  }
  if (rank != 0) return 0;

  std::set<std::string> hosts;
  for (const RankPlacement& p : placements) hosts.insert(p.host);
  const double tokens = double(ranks * s.tokens);
  const double active_flops = bench::active_flops(s, tokens);
  const double moe_s = median(contenders[0].slowest_s), dense_s = median(contenders[1].slowest_s),
               raw_s = median(contenders[2].slowest_s);
  nlohmann::ordered_json result = {
      {"benchmark", "layer"},
      {"ranks", ranks},
      {"hosts", hosts.size()},
      {"threads_per_rank", placements[0].threads},
      {"tokens_per_rank", s.tokens},
      {"d_model", s.d_model},
      {"d_expert", s.d_expert},
      {"experts", s.experts},
      {"top_k", s.top_k},
      {"capacity_factor", o.capacity_factor},
      {"routing", o.routing},
      {"expert_gemm", o.expert_gemm},
      {"exchange_chunks", o.exchange_chunks},
      {"dtype", "float32"},
      {"reps", o.repetitions.reps},
      {"warmup", o.repetitions.warmup},
      {"active_flops", active_flops},
      {"rows_received_max_over_mean", median(received_max_over_mean)},
      {"dropped_share", median(dropped_share)},
      // What ran (auto resolved): the scaling model charges the rows by it.
      {"dispatch", dispatches_per_rank(layer_config(o), false) ? "per_rank" : "per_choice"},
      {"bytes_per_rank_each_way", median(wire_rows_per_token) * double(s.tokens * s.d_model) * 4.0},
      {"wire_rows_per_token_each_way", median(wire_rows_per_token)},
      {"wire_bytes_per_token_each_way", median(wire_rows_per_token) * double(s.d_model) * 4.0},
      {"other_ranks_per_token_from_routing", median(remote_ranks_per_token)},
      {"exchange", exchange.hierarchical ? "hierarchical" : "flat"},
      {"exchange_why", exchange.why},
      {"ranks_per_host", ranks / host_count},
      {"topk_groups", o.topk_groups},
      {"network_rows_per_token_each_way", median(network_rows_per_token)},
      {"other_hosts_per_token_from_routing", median(remote_hosts_per_token)},
      {"network_messages_per_rank_per_exchange", median(network_messages_per_rank)},
  };
  for (const bench::Contender& c : contenders) {
    nlohmann::ordered_json entry = bench::summary(c.slowest_s);
    std::vector<int> slowest_count(ranks, 0);
    for (int r : c.slowest_rank) ++slowest_count[r];
    entry["slowest_rank_counts"] = slowest_count;
    result["contenders"][c.name] = entry;
  }
  double exchange_s = 0, phased_sum = 0;
  for (size_t p = 0; p < kPhases.size(); ++p) {
    result["phases"].push_back({{"phase", phase_label(kPhases[p])},
                                {"pass", is_backward(kPhases[p]) ? "backward" : "forward"},
                                {"mean_over_ranks_s", median(phase_mean[p])},
                                {"slowest_rank_s", median(phase_max[p])}});
    phased_sum += median(phase_mean[p]);
    if (phase_category(kPhases[p]) == PhaseCategory::kExchange) exchange_s += median(phase_mean[p]);
  }
  result["moe_per_token_s"] = moe_s / tokens;
  result["moe_tflops_per_rank"] = active_flops / moe_s / ranks / 1e12;
  result["dense_tflops_per_rank"] = active_flops / dense_s / ranks / 1e12;
  result["moe_over_dense"] = moe_s / dense_s;
  result["phased_exchange_s"] = exchange_s;
  result["exchange_over_raw"] = exchange_s / raw_s;
  // The layer still waits this share of what the same bytes take alone; the rest is hidden
  // behind expert compute (the pipeline, moe.exchange_chunks) or never travels (own rows).
  // Never below 0: exchange phases longer than the raw all-to-alls (waits for a busier
  // peer, packing) hide nothing, they do not hide a negative amount.
  const double hidden_share = std::max(0.0, 1.0 - exchange_s / raw_s);
  result["exchange_hidden_share"] = hidden_share;

  std::cout << "# layer benchmark: " << ranks << " ranks on " << hosts.size() << " host(s), "
            << s.tokens << " tokens/rank, D " << s.d_model << ", " << s.experts
            << " SwiGLU experts of " << s.d_expert << ", top-" << s.top_k << ", capacity "
            << o.capacity_factor << ", routing " << o.routing << ", dispatch " << o.dispatch
            << ", gemm " << o.expert_gemm << ", exchange chunks " << o.exchange_chunks
            << "; forward + backward, median of " << o.repetitions.reps
            << " alternating reps (slowest rank)\n"
            << std::fixed << std::setprecision(3) << std::left << std::setw(28) << "contender"
            << std::right << std::setw(10) << "ms" << std::setw(10) << "p10" << std::setw(10)
            << "p90"
            << "\n";
  for (const bench::Contender& c : contenders)
    std::cout << std::left << std::setw(28) << c.name << std::right << std::setw(10)
              << 1e3 * median(c.slowest_s) << std::setw(10)
              << 1e3 * bench::quantile(c.slowest_s, 0.1) << std::setw(10)
              << 1e3 * bench::quantile(c.slowest_s, 0.9) << "\n";
  std::cout << std::left << std::setw(28) << "phase (phased run)" << std::right << std::setw(10)
            << "mean ms" << std::setw(10) << "max ms"
            << "\n";
  for (size_t p = 0; p < kPhases.size(); ++p)
    std::cout << std::left << std::setw(28) << phase_label(kPhases[p]) << std::right
              << std::setw(10) << 1e3 * median(phase_mean[p]) << std::setw(10)
              << 1e3 * median(phase_max[p]) << "\n";
  std::cout << "MoE / dense time " << std::setprecision(2) << moe_s / dense_s
            << "; exchange phases / raw all-to-alls " << exchange_s / raw_s << " (hidden "
            << std::setprecision(0) << 100.0 * hidden_share << "%)" << std::setprecision(2)
            << "; busiest rank receives " << median(received_max_over_mean) << "x the mean rows\n"
            << "rows crossing a link per token, each way: " << median(wire_rows_per_token)
            << " (other ranks per token in the routing: " << median(remote_ranks_per_token) << ")\n"
            << "exchange " << exchange.why
            << "; rows crossing the network per token, each way: " << median(network_rows_per_token)
            << " (other hosts per token in the routing: " << median(remote_hosts_per_token)
            << "); network messages per rank per exchange: " << median(network_messages_per_rank)
            << "\n";
  bench::emit_result(o.out, result);
  return 0;
}

}  // namespace

CLI::App* add_layer_bench(CLI::App& bench, LayerBenchOptions& o) {
  CLI::App* layer = bench.add_subcommand(
      "layer",
      "Expert-parallel MoE layer forward+backward vs dense FFN vs raw all-to-alls, per phase");
  bench::add_layer_shape_options(*layer, o.shape, "Tokens per rank",
                                 "Experts in all (a multiple of the ranks)");
  layer
      ->add_option("--exchange-chunks", o.exchange_chunks,
                   "moe.exchange_chunks: the exchange in this many pieces")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  layer->add_option("--capacity-factor", o.capacity_factor, "Expert capacity factor; 0 = dropless")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  layer
      ->add_option("--routing", o.routing,
                   "uniform (the random router), balanced | hot:E:F | zipf:S | empty_rank:R | "
                   "replay:RUN_DIR")
      ->capture_default_str();
  layer->add_option("--exchange", o.exchange, "moe.exchange: flat | hierarchical | auto")
      ->check(CLI::IsMember({"flat", "hierarchical", "auto"}))
      ->capture_default_str();
  layer
      ->add_option("--topk-groups", o.topk_groups,
                   "Node-limited routing: each token's experts on at most this many hosts "
                   "(moe.topk_groups with the live hosts as groups); 0 = no limit")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  layer->add_option("--dispatch", o.dispatch, "moe.dispatch: per_rank | per_choice | auto")
      ->check(CLI::IsMember({"per_rank", "per_choice", "auto"}))
      ->capture_default_str();
  layer->add_option("--expert-gemm", o.expert_gemm, "loop | grouped | auto")
      ->check(CLI::IsMember({"loop", "grouped", "auto"}))
      ->capture_default_str();
  layer
      ->add_option("--threads", o.threads,
                   "LibTorch threads per rank (1 makes ranks the unit of hardware; 0 = its CPUs / "
                   "the ranks sharing them)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  bench::add_repetition_options(*layer, o.repetitions);
  bench::add_out_option(*layer, o.out);
  return layer;
}

int run_layer_bench(const LayerBenchOptions& o) {
  return bench::run_under_mpi([&] { return layer_bench(o); });
}

}  // namespace triage
