// `triage bench calibrate` (under mpirun): measures what the scaling model needs and writes
// it as a params file. Compute: every rank at once runs the MoE layer alone (all experts
// local, phase_clock on), a dense FFN and an AdamW update, one thread each, so the rates
// are those of a host whose slots are all busy. Links: ping-pong and all-to-all from 8 B
// per message up to --max-bytes, among the ranks of rank 0's host (shared memory) and
// among one rank per host (the network), fitted by link_probe.
#include "bench/calibrate_bench.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <mpi.h>

#include <algorithm>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>

#include "bench/harness.h"
#include "bench/link_probe.h"
#include "bench/scaling_model.h"
#include "bench/timing.h"
#include "common/check.h"
#include "common/error.h"
#include "common/parameters.h"
#include "model/feed_forward.h"
#include "moe/moe_layer.h"
#include "parallel/agreement.h"
#include "parallel/mpi_communicator.h"
#include "parallel/phase_clock.h"
#include "parallel/placement.h"

namespace triage {
namespace {

using bench::median;
using bench::now_seconds;

// The layer alone on each rank (all experts local): median seconds per phase.
std::map<Phase, double> layer_phases(const CalibrateOptions& o, int64_t tokens, Communicator& self,
                                     Communicator& world) {
  MoeConfig c = bench::layer_config(o.shape);
  c.expert_gemm = choice_from<ExpertGemm>(o.expert_gemm);
  MoeLayer layer(c, o.shape.d_model, at::kFloat, 7, &self, &self);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  std::map<Phase, std::vector<double>> seconds;
  for (int64_t rep = 0; rep < o.repetitions.warmup + o.repetitions.reps; ++rep) {
    at::Tensor x = at::randn({tokens, o.shape.d_model}, gen).requires_grad_(true);
    at::Tensor upstream = at::randn({tokens, o.shape.d_model}, gen);
    for (const auto& p : layer.parameters()) p.tensor.mutable_grad() = at::Tensor();
    world.barrier();  // every slot busy at once
    phase_clock::start({});
    MoeOutput out = layer.forward(x, true);
    at::Tensor objective = (out.y * upstream).sum() + out.balance_loss + out.z_loss;
    phase_clock::enter(Phase::kCombineBwd);
    objective.backward();
    const phase_clock::Totals totals = phase_clock::stop();
    if (rep < o.repetitions.warmup) continue;
    for (const auto& [phase, s] : totals) seconds[phase].push_back(s);
  }
  std::map<Phase, double> medians;
  for (const auto& [phase, s] : seconds) medians[phase] = median(s);
  return medians;
}

std::map<std::string, double> by_label(const std::map<Phase, double>& seconds) {
  std::map<std::string, double> out;
  for (const auto& [phase, s] : seconds) out[std::string(phase_label(phase))] = s;
  return out;
}

// Each rank's own median over `reps` (after one untimed), all ranks starting together.
double median_seconds(int64_t reps, Communicator& world, const std::function<void()>& work) {
  std::vector<double> times;
  for (int64_t rep = 0; rep < reps + 1; ++rep) {
    world.barrier();
    const double start = now_seconds();
    work();
    if (rep > 0) times.push_back(now_seconds() - start);
  }
  return median(times);
}

// Compute rates of a rank at full speed. `shared`: how many ranks shared each slot while
// they all computed at once (this host's ranks over its slots, at least 1).
void measure_compute(const CalibrateOptions& o, Communicator& world, double shared,
                     model::Params& p, std::map<Phase, double>& phase) {
  auto self = make_mpi_communicator(MPI_COMM_SELF);
  const bool talk = world.rank() == 0;
  if (talk) std::cerr << "[calibrate] compute: the MoE layer on every rank at once" << std::endl;
  phase = layer_phases(o, o.shape.tokens, *self, world);
  auto at = [&](Phase name) { return phase.count(name) ? phase.at(name) : 0.0; };
  const bench::LayerShape& s = o.shape;
  const double T = double(s.tokens), K = double(s.top_k), D = double(s.d_model),
               E = double(s.experts);
  const double copy_bytes = 2.0 * T * K * D * 4.0;
  const double expert_flops = bench::active_flops(s, T) / 3.0;  // forward alone

  if (talk) std::cerr << "[calibrate] compute: dense FFN and AdamW update" << std::endl;
  at::Generator init = at::make_generator<at::CPUGeneratorImpl>(5);
  FeedForward dense(s.d_model, s.top_k * s.d_expert, ExpertType::kSwiglu, kInitStd, at::kFloat,
                    init);
  at::Tensor x = at::randn({s.tokens, s.d_model}, init);
  const double dense_s = median_seconds(o.repetitions.reps, world, [&] {
    at::Tensor input = x.detach().requires_grad_(true);
    dense.forward(input).sum().backward();
  });
  const int64_t n = int64_t(1) << 22;
  at::Tensor w = at::randn({n}, init), g = at::randn({n}, init), m1 = at::zeros({n}),
             m2 = at::zeros({n});
  const double adam_s = median_seconds(o.repetitions.reps, world, [&] {  // torch's AdamW update
    m1.mul_(0.9).add_(g, 0.1);
    m2.mul_(0.95).addcmul_(g, g, 0.05);
    w.mul_(1 - 1e-4).addcdiv_(m1, m2.sqrt().add_(1e-8), -1e-3);
  });

  p.route_flops_per_s = 2.0 * T * D * E / at(Phase::kRoute);
  p.pack_bytes_per_s = copy_bytes / at(Phase::kSortPack);
  p.expert_forward_flops_per_s = expert_flops / at(Phase::kExperts);
  p.combine_bytes_per_s = copy_bytes / at(Phase::kCombine);
  p.combine_backward_bytes_per_s = copy_bytes / at(Phase::kCombineBwd);
  p.expert_backward_flops_per_s = 2.0 * expert_flops / at(Phase::kExpertsBwd);
  p.pack_route_backward_bytes_per_s = copy_bytes / at(Phase::kSortPackRouteBwd);
  p.dense_flops_per_s = 3.0 * expert_flops / dense_s;
  p.optimizer_bytes_per_s = model::kAdamWBytesPerParameter * double(n) / adam_s;
  // The experts again at 2, 4 and 8 times the rows per expert: GEMMs speed up with rows.
  for (int64_t scale : {1, 2, 4, 8}) {
    if (talk) std::cerr << "[calibrate] compute: experts at " << scale << "x the rows" << std::endl;
    const std::map<Phase, double> scaled =
        scale == 1 ? phase : layer_phases(o, s.tokens * scale, *self, world);
    const double rows = T * K * double(scale) / E, flops = expert_flops * double(scale);
    p.expert_forward_by_rows.emplace_back(rows, flops / scaled.at(Phase::kExperts) * shared);
    p.expert_backward_by_rows.emplace_back(rows,
                                           2.0 * flops / scaled.at(Phase::kExpertsBwd) * shared);
  }
  for (double* rate :
       {&p.route_flops_per_s, &p.pack_bytes_per_s, &p.expert_forward_flops_per_s,
        &p.combine_bytes_per_s, &p.combine_backward_bytes_per_s, &p.expert_backward_flops_per_s,
        &p.pack_route_backward_bytes_per_s, &p.dense_flops_per_s, &p.optimizer_bytes_per_s})
    *rate *= shared;
}

// Links: shared memory among rank 0's host's ranks, the network among one rank per host,
// and the whole world when hosts are oversubscribed. Returns what was measured, by link.
nlohmann::ordered_json measure_links(const CalibrateOptions& o, const bench::HostGroups& groups,
                                     Communicator& world, bool any_shared, model::Params& p) {
  const bench::LayerShape& s = o.shape;
  const double typical = double(s.tokens * s.top_k * s.d_model) * 4.0;  // a row exchange's bytes
  const bool talk = world.rank() == 0;
  nlohmann::ordered_json measured;
  // Shared memory among as many of rank 0's host's ranks as it has slots (at least 2), so
  // the link is measured unhurried; the oversubscribed case is measured below.
  const int intra_ranks = std::min(groups.first_host_ranks(), std::max(2, int(p.slots_per_host)));
  MPI_Comm intra = groups.first_host(intra_ranks);
  if (groups.first_host_ranks() >= 2) {
    if (talk)
      std::cerr << "[calibrate] shared memory (" << intra_ranks
                << " ranks): ping-pong and all-to-all, 8 B to " << o.max_bytes << " B" << std::endl;
    p.intra_host = bench::measure_link(intra, o.max_bytes, typical, measured["intra_host"]);
    measured["intra_host"]["ranks"] = intra_ranks;
  }
  if (intra != MPI_COMM_NULL) TRIAGE_MPI_CHECK(MPI_Comm_free(&intra));
  if (groups.hosts() >= 2) {
    if (talk)
      std::cerr << "[calibrate] network: ping-pong and all-to-all between " << groups.hosts()
                << " hosts" << std::endl;
    p.inter_host =
        bench::measure_link(groups.leaders(), o.max_bytes, typical, measured["inter_host"]);
    measured["inter_host"]["hosts"] = groups.hosts();
  }
  if (any_shared) {  // a host's ranks outnumber its slots: collectives wait for the scheduler
    if (talk)
      std::cerr << "[calibrate] oversubscribed hosts: all-to-all over all " << world.size()
                << " ranks" << std::endl;
    const bench::LinkFit fit = bench::all_to_all(MPI_COMM_WORLD, o.max_bytes, typical);
    p.oversubscribed = fit.link;
    measured["oversubscribed_world"] = {{"ranks", world.size()}, {"all_to_all", fit.json()}};
  }
  if (groups.first_host_ranks() < 2) {
    // One rank per host: shared memory was not measured; the model needs it only for
    // ranks that share a host, so the network figure stands in (a stated assumption).
    p.intra_host = p.inter_host;
    p.assumptions.push_back("intra_host copied from inter_host: calibrated with one rank per host");
  }
  return measured;
}

int calibrate(const CalibrateOptions& o) {
  const std::vector<RankPlacement> placements = place_ranks(1, false);  // one thread per rank
  auto world = make_mpi_communicator(MPI_COMM_WORLD);
  const int rank = world->rank(), ranks = world->size();
  agree([&] {
    bench::check_layer_shape(o.shape);
    if (ranks < 2)
      throw Error("calibrate needs at least 2 ranks (mpirun -n 2 ...) to measure a link");
  });
  const bench::HostGroups groups;

  model::Params p;
  // The CPUs this host's ranks are given (virtual hosts pinned to CPUs of their own count
  // theirs), unless the caller says otherwise.
  p.slots_per_host = o.slots_per_host > 0 ? o.slots_per_host : double(groups.cpus());
  // When this host's ranks outnumber its slots, each ran at slots / ranks of full speed
  // while they all computed at once.
  const double shared = std::max(1.0, double(groups.local_size()) / p.slots_per_host);
  std::map<Phase, double> phase;
  measure_compute(o, *world, shared, p, phase);
  // Every rank joins this all-reduce, shared or not: the world all-to-all needs them all.
  at::Tensor any_shared = at::full({1}, shared > 1.0 ? 1.0 : 0.0, at::kDouble);
  world->allreduce_sum_(any_shared);
  nlohmann::ordered_json links = measure_links(o, groups, *world, any_shared.item<double>() > 0, p);
  if (rank != 0) return 0;

  std::set<std::string> host_names;
  for (const RankPlacement& r : placements) host_names.insert(r.host);
  nlohmann::ordered_json out = model::to_json(p);
  const bench::LayerShape& s = o.shape;
  out["calibrated"] = {{"ranks", ranks},
                       {"hosts", host_names.size()},
                       {"threads_per_rank", 1},
                       {"shape",
                        {{"tokens", s.tokens},
                         {"d_model", s.d_model},
                         {"d_expert", s.d_expert},
                         {"experts", s.experts},
                         {"top_k", s.top_k},
                         {"expert_gemm", o.expert_gemm}}},
                       {"layer_phases_s", by_label(phase)},
                       {"links", links}};
  std::cout << std::scientific << std::setprecision(3) << "# calibration (" << ranks << " ranks, "
            << host_names.size() << " host(s), 1 thread each)\n"
            << "intra-host all-to-all: latency " << p.intra_host.latency_s << " s, bandwidth "
            << p.intra_host.bandwidth_Bps << " B/s\n";
  if (groups.hosts() >= 2)
    std::cout << "inter-host all-to-all: latency " << p.inter_host.latency_s << " s, bandwidth "
              << p.inter_host.bandwidth_Bps << " B/s\n";
  std::cout << "expert GEMM forward " << p.expert_forward_flops_per_s << " FLOP/s, backward "
            << p.expert_backward_flops_per_s << " FLOP/s; dense " << p.dense_flops_per_s
            << " FLOP/s\n";
  bench::write_result(o.out, out);
  std::cerr << "[calibrate] wrote " << o.out << std::endl;
  return 0;
}

}  // namespace

CLI::App* add_calibrate_bench(CLI::App& bench, CalibrateOptions& o) {
  CLI::App* c = bench.add_subcommand(
      "calibrate", "Measure links and compute rates for `bench model` (params file)");
  bench::add_layer_shape_options(*c, o.shape, "Tokens per rank of the calibration layer",
                                 "Experts");
  c->add_option("--expert-gemm", o.expert_gemm, "loop | grouped | auto")
      ->check(CLI::IsMember({"loop", "grouped", "auto"}))
      ->capture_default_str();
  bench::add_repetition_options(*c, o.repetitions);
  c->add_option("--max-bytes", o.max_bytes, "Largest message (ping-pong; all-to-all per rank)")
      ->check(CLI::Range(int64_t(8), int64_t(1) << 30))
      ->capture_default_str();
  c->add_option(
       "--slots-per-host", o.slots_per_host,
       "Ranks a host runs at full speed (default: the CPUs its ranks are given, from their "
       "affinity masks and cgroup quota)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--out", o.out, "Params file to write")->required();
  return c;
}

int run_calibrate_bench(const CalibrateOptions& o) {
  return bench::run_under_mpi([&] { return calibrate(o); });
}

}  // namespace triage
