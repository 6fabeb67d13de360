// Repetitions alternate the exchange and the raw all-to-alls so machine noise hits both
// alike; each repetition's time is the slowest rank's. Prints a table on rank 0 and JSON.
#include "bench/exchange_bench.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <mpi.h>
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>

#include "bench/harness.h"
#include "bench/link_probe.h"
#include "bench/timing.h"
#include "common/check.h"
#include "common/error.h"
#include "moe/exchange.h"
#include "moe/router.h"
#include "moe/routing_override.h"
#include "moe/token_exchange.h"
#include "parallel/agreement.h"
#include "parallel/mpi_communicator.h"

namespace triage {
namespace {

using bench::median;
using bench::raw_alltoallv;

// How far a token's rows travel under a routing, averaged over every rank's tokens: the
// distinct EP ranks its choices live on, and the bytes of its rows bound for other ranks
// (the exchange sends one row per kept choice, so rows to one rank are not merged).
struct Destinations {
  double ranks_per_token = 0, wire_bytes_per_token = 0;
};

Destinations destinations(const at::Tensor& experts_TK, int64_t experts_per_rank, int rank,
                          int ranks, int64_t row_bytes) {
  const at::Tensor rank_TK = experts_TK.div(experts_per_rank, "floor");
  double sums[3] = {
      tokens_reaching_rank(experts_TK, {}, experts_per_rank, ranks).sum().item<double>(),
      (rank_TK != rank).sum().item<double>(), double(experts_TK.size(0))};
  TRIAGE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
  return {sums[0] / sums[2], sums[1] * double(row_bytes) / sums[2]};
}

// The exchange against the raw all-to-alls, alternating, after `warmup` untimed rounds.
struct SideBySide {
  std::vector<double> exchange_s, raw_s, ratios;  // per timed repetition
};

SideBySide alternate(const ExchangeBenchOptions& o, Communicator& ep, const std::string& what,
                     std::function<void()> exchange, std::function<void()> raw,
                     const std::function<void()>& prepare = {}) {
  std::vector<bench::Contender> contenders = {{"exchange", std::move(exchange)},
                                              {"raw", std::move(raw)}};
  const int64_t repetitions = o.repetitions.warmup + o.repetitions.reps;
  for (int64_t rep = 0; rep < repetitions; ++rep) {
    bench::run_repetition(contenders, rep, rep >= o.repetitions.warmup, &ep, prepare);
    if (ep.rank() == 0) bench::show_progress(what, rep + 1, repetitions);
  }
  SideBySide out{contenders[0].slowest_s, contenders[1].slowest_s, {}};
  for (size_t i = 0; i < out.exchange_s.size(); ++i)
    out.ratios.push_back(out.exchange_s[i] / out.raw_s[i]);
  return out;
}

int exchange_bench(const ExchangeBenchOptions& o) {
  auto ep = make_mpi_communicator(MPI_COMM_WORLD);
  const int rank = ep->rank(), ranks = ep->size();
  const int64_t num_experts = o.experts_per_rank * ranks;
  RoutingOverride rule;
  agree([&] {  // option mistakes are found by every rank alike: reported once
    if (o.top_k > num_experts)
      throw Error("--top-k (" + std::to_string(o.top_k) + ") must be at most the experts (" +
                  std::to_string(num_experts) + ")");
    rule = bench::parse_bench_routing(o.routing, num_experts, ranks, o.top_k);
    if (o.topk_groups > 0 && (o.routing != "uniform" || o.topk_groups > ranks ||
                              o.top_k > o.topk_groups * o.experts_per_rank))
      throw Error("--topk-groups " + std::to_string(o.topk_groups) +
                  ": expected --routing uniform, at most the ranks (" + std::to_string(ranks) +
                  ") and room for --top-k in that many ranks' experts");
  });

  // Inputs seeded by rank: uniform random top-k choices, all kept.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1234 + rank);
  at::Tensor x = at::randn({o.tokens, o.width}, gen, at::kFloat);
  std::vector<at::Tensor> choices;
  for (int64_t t = 0; t < o.tokens; ++t)
    choices.push_back(at::randperm(num_experts, gen).narrow(0, 0, o.top_k));
  at::Tensor experts_TK = at::stack(choices);
  if (rule.kind != RoutingOverride::Kind::kNone) {
    at::Tensor scores_TE = at::rand({o.tokens, num_experts}, gen);
    experts_TK =
        override_routing(rule, experts_TK, scores_TE, rank * o.tokens, 1234, o.experts_per_rank);
  }
  // Group-limited routing (moe.topk_groups, a group per rank) on uniform random scores,
  // beside plain top-k of the same scores.
  at::Tensor unlimited_TK;
  if (o.topk_groups > 0) {
    const at::Tensor scores_TE = at::rand({o.tokens, num_experts}, gen);
    unlimited_TK = std::get<1>(scores_TE.topk(o.top_k, -1));
    experts_TK = std::get<1>(within_best_groups(scores_TE, ranks, o.topk_groups).topk(o.top_k, -1));
  }
  const int64_t row_bytes = o.width * int64_t(sizeof(float));
  const Destinations travel = destinations(experts_TK, o.experts_per_rank, rank, ranks, row_bytes);
  at::Tensor keep_TK = at::ones({o.tokens, o.top_k}, at::kBool);
  at::Tensor weights_TK = at::full({o.tokens, o.top_k}, 1.0f / float(o.top_k));

  // The raw baseline moves exactly the rows the exchange moves, from ready buffers.
  DispatchPlan plan = dispatch(x, experts_TK, keep_TK, num_experts, *ep).plan;
  at::Tensor raw_send = x.index_select(0, plan.order.token_of_row_R).contiguous();
  at::Tensor raw_recv = at::empty(
      {std::accumulate(plan.recv_rows.begin(), plan.recv_rows.end(), int64_t(0)), o.width},
      at::kFloat);
  at::Tensor raw_back = at::empty_like(raw_send);
  int64_t rows_sent = raw_send.size(0);
  TRIAGE_MPI_CHECK(
      MPI_Allreduce(MPI_IN_PLACE, &rows_sent, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
  // Rows for another rank's experts: what crosses a link (rows for this rank's own stay).
  int64_t rows_on_wire = raw_send.size(0) - plan.send_rows[rank];
  TRIAGE_MPI_CHECK(
      MPI_Allreduce(MPI_IN_PLACE, &rows_on_wire, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));

  at::Tensor x_grad = x.clone().set_requires_grad(true);
  at::Tensor grad_y = at::ones_like(x);
  auto exchange = [&] {
    c10::NoGradGuard no_grad;
    Dispatched sent = dispatch(x, experts_TK, keep_TK, num_experts, *ep, o.chunks);
    combine(exchange_rows(sent.x_RD, sent.plan.layout, *ep), weights_TK, sent.plan);
  };
  // Forward and backward: the backward is the reversed exchange, a second round trip.
  auto exchange_and_backward = [&] {
    Dispatched sent = dispatch(x_grad, experts_TK, keep_TK, num_experts, *ep, o.chunks);
    combine(exchange_rows(sent.x_RD, sent.plan.layout, *ep), weights_TK, sent.plan)
        .backward(grad_y);
  };
  auto raw_trips = [&](int trips) {
    return [&, trips] {
      for (int trip = 0; trip < trips; ++trip) {
        raw_alltoallv(raw_send.data_ptr<float>(), plan.send_rows, raw_recv.data_ptr<float>(),
                      plan.recv_rows, o.width);
        raw_alltoallv(raw_recv.data_ptr<float>(), plan.recv_rows, raw_back.data_ptr<float>(),
                      plan.send_rows, o.width);
      }
    };
  };
  // Rows each rank receives: the skew the routing makes (max over mean).
  int64_t received = plan.recv_rows.empty() ? 0
                                            : std::accumulate(plan.recv_rows.begin(),
                                                              plan.recv_rows.end(), int64_t(0));
  int64_t most_received = received;
  TRIAGE_MPI_CHECK(
      MPI_Allreduce(MPI_IN_PLACE, &most_received, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD));

  const SideBySide forward = alternate(o, *ep, "exchange forward", exchange, raw_trips(1));
  const SideBySide backward =
      alternate(o, *ep, "exchange forward + backward", exchange_and_backward, raw_trips(2),
                [&] { x_grad.mutable_grad() = at::Tensor(); });
  const std::vector<double>& exchange_s = forward.exchange_s;
  const std::vector<double>& raw_s = forward.raw_s;
  const std::vector<double>& ratios = forward.ratios;

  const double bytes_each_way = double(rows_sent) * double(o.width) * sizeof(float);
  nlohmann::ordered_json result = {
      {"benchmark", "exchange"},
      {"ranks", ranks},
      {"tokens_per_rank", o.tokens},
      {"width", o.width},
      {"top_k", o.top_k},
      {"experts", num_experts},
      {"dtype", "float32"},
      {"routing", o.routing},
      {"most_rows_received_over_mean",
       double(most_received) * double(ranks) / std::max(1.0, double(rows_sent))},
      {"reps", o.repetitions.reps},
      {"bytes_each_way", bytes_each_way},
      {"exchange_chunks", o.chunks},
      {"topk_groups", o.topk_groups},
      {"destination_ranks_per_token", travel.ranks_per_token},
      {"wire_bytes_per_token_each_way",
       double(rows_on_wire) * double(o.width) * sizeof(float) / double(o.tokens * ranks)},
      {"exchange_median_s", median(exchange_s)},
      {"raw_alltoallv_median_s", median(raw_s)},
      {"ratio_of_medians", median(exchange_s) / median(raw_s)},
      {"median_of_ratios", median(ratios)},
      {"exchange_s", exchange_s},
      {"raw_alltoallv_s", raw_s},
      {"forward_backward",
       {{"exchange_median_s", median(backward.exchange_s)},
        {"raw_alltoallv_twice_median_s", median(backward.raw_s)},
        {"ratio_of_medians", median(backward.exchange_s) / median(backward.raw_s)},
        {"median_of_ratios", median(backward.ratios)}}},
  };
  std::optional<Destinations> plain;
  if (unlimited_TK.defined()) {
    plain = destinations(unlimited_TK, o.experts_per_rank, rank, ranks, row_bytes);
    result["without_group_limit"] = {
        {"destination_ranks_per_token", plain->ranks_per_token},
        {"wire_bytes_per_token_each_way", plain->wire_bytes_per_token}};
  }
  if (rank == 0) {
    std::cout << "# exchange benchmark: " << ranks << " ranks, " << o.tokens << " tokens x "
              << o.width << " floats per rank, top-" << o.top_k << ", " << num_experts
              << " experts, routing " << o.routing << "; median of " << o.repetitions.reps
              << " reps (slowest rank)\n"
              << std::fixed << std::setprecision(3) << std::left << std::setw(34) << "what"
              << "ms\n"
              << std::setw(34) << "dispatch + combine" << median(exchange_s) * 1e3 << "\n"
              << std::setw(34) << "raw MPI_Alltoallv out + back" << median(raw_s) * 1e3 << "\n"
              << std::setw(34) << "ratio (median of per-rep ratios)" << median(ratios) << "\n"
              << std::setw(34) << "forward + backward" << median(backward.exchange_s) * 1e3 << "\n"
              << std::setw(34) << "raw MPI_Alltoallv, two trips" << median(backward.raw_s) * 1e3
              << "\n"
              << std::setw(34) << "ratio (median of per-rep ratios)" << median(backward.ratios)
              << "\n"
              << std::setw(34) << "EP ranks a token's rows reach" << travel.ranks_per_token << "\n";
    if (plain)
      std::cout << std::setw(34) << "  without the group limit" << plain->ranks_per_token << "\n";
    bench::write_result(o.out, result);
  }
  return 0;
}

}  // namespace

int run_exchange_bench(const ExchangeBenchOptions& o) {
  return bench::run_under_mpi([&] { return exchange_bench(o); });
}

CLI::App* add_exchange_bench(CLI::App& bench, ExchangeBenchOptions& o) {
  CLI::App* exchange =
      bench.add_subcommand("exchange", "MoE dispatch + combine vs raw MPI_Alltoallv, same bytes");
  exchange->add_option("--tokens", o.tokens, "Tokens per rank")->check(CLI::PositiveNumber);
  exchange->add_option("--width", o.width, "Floats per token row")->check(CLI::PositiveNumber);
  exchange->add_option("--top-k", o.top_k, "Experts per token")->check(CLI::PositiveNumber);
  exchange->add_option("--experts-per-rank", o.experts_per_rank, "Experts on each rank")
      ->check(CLI::PositiveNumber);
  exchange
      ->add_option("--chunks", o.chunks, "moe.exchange_chunks: the exchange in this many pieces")
      ->check(CLI::PositiveNumber);
  bench::add_repetition_options(*exchange, o.repetitions);
  exchange
      ->add_option("--routing", o.routing,
                   "uniform (random top-k), or balanced | hot:E:F | zipf:S | empty_rank:R")
      ->capture_default_str();
  exchange
      ->add_option("--topk-groups", o.topk_groups,
                   "Group-limited routing (moe.topk_groups), one group per rank; reports the "
                   "ranks and bytes per token with and without it")
      ->check(CLI::NonNegativeNumber);
  bench::add_out_option(*exchange, o.out, "Write the JSON result here (default: stdout)");
  return exchange;
}

}  // namespace triage
