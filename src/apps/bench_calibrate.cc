// `triage bench calibrate` (under mpirun): measures what the scaling model needs and writes
// it as a params file. Compute: every rank at once runs the MoE layer alone (all experts
// local, phase_clock on), a dense FFN and an AdamW update, one thread each, so the rates
// are those of a host whose slots are all busy. Links: ping-pong and all-to-all from 8 B
// per message up to --max-bytes, among the ranks of rank 0's host (shared memory) and
// among one rank per host (the network), each fitted to latency + bytes / bandwidth by
// least squares on relative error, so small and large messages weigh alike.
#include "apps/bench_calibrate.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "apps/bench_stats.h"
#include "apps/scaling_model.h"
#include "common/check.h"
#include "common/error.h"
#include "model/feed_forward.h"
#include "moe/moe_layer.h"
#include "parallel/agreement.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_environment.h"
#include "parallel/phase_clock.h"
#include "parallel/placement.h"

namespace triage {
namespace {

using bench::median;
using bench::now_seconds;

struct Fit {
  model::Link link;
  std::vector<std::pair<double, double>> points;  // (bytes, seconds)
};

// 8 B to max_bytes by factors of 8, plus half, once and twice `typical` (the exchange's
// message), where the fit takes its bandwidth.
std::vector<int64_t> message_sizes(int64_t max_bytes, int64_t typical) {
  std::set<int64_t> sizes;
  for (int64_t b = 8; b <= max_bytes; b *= 8) sizes.insert(b);
  sizes.insert(max_bytes);
  for (int64_t b : {typical / 2, typical, typical * 2})
    if (b >= 8 && b <= max_bytes) sizes.insert(b);
  return {sizes.begin(), sizes.end()};
}

// A barrier that sleeps instead of spinning: ranks that sit out a link test must leave
// the cores to the ranks measuring (spinning ones cost them a scheduler tick per message).
void quiet_barrier(MPI_Comm comm) {
  MPI_Request request;
  TRIAGE_MPI_CHECK(MPI_Ibarrier(comm, &request));
  for (int done = 0; !done;) {
    TRIAGE_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (!done) std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
}

int reps_for(int64_t bytes) {
  return int(std::clamp<int64_t>((int64_t(1) << 26) / std::max<int64_t>(bytes, 1), 3, 50));
}

// Half the round trip between ranks a and b of comm (others idle); median over reps.
Fit ping_pong(MPI_Comm comm, int a, int b, int64_t max_bytes, double typical_bytes) {
  int me = 0;
  TRIAGE_MPI_CHECK(MPI_Comm_rank(comm, &me));
  Fit fit;
  for (int64_t bytes : message_sizes(max_bytes, int64_t(typical_bytes))) {
    std::vector<char> buffer(static_cast<size_t>(bytes));
    std::vector<double> times;
    const int reps = reps_for(bytes);
    for (int rep = 0; rep < reps; ++rep) {
      TRIAGE_MPI_CHECK(MPI_Barrier(comm));
      const double start = now_seconds();
      if (me == a) {
        TRIAGE_MPI_CHECK(MPI_Send(buffer.data(), int(bytes), MPI_CHAR, b, 0, comm));
        TRIAGE_MPI_CHECK(
            MPI_Recv(buffer.data(), int(bytes), MPI_CHAR, b, 0, comm, MPI_STATUS_IGNORE));
      } else if (me == b) {
        TRIAGE_MPI_CHECK(
            MPI_Recv(buffer.data(), int(bytes), MPI_CHAR, a, 0, comm, MPI_STATUS_IGNORE));
        TRIAGE_MPI_CHECK(MPI_Send(buffer.data(), int(bytes), MPI_CHAR, a, 0, comm));
      }
      times.push_back((now_seconds() - start) / 2.0);
    }
    double t = median(times);
    TRIAGE_MPI_CHECK(MPI_Bcast(&t, 1, MPI_DOUBLE, a, comm));
    fit.points.emplace_back(double(bytes), t);
  }
  fit.link = model::fit_link(fit.points, typical_bytes);
  return fit;
}

// MPI_Alltoall with `bytes` per peer, back to back (pausing first was tried: on a tc tbf
// link it made TCP slower, not faster); a point is (bytes each rank sends to others, the
// slowest rank's time), the quantity the model's row exchange charges.
Fit all_to_all(MPI_Comm comm, int64_t max_bytes, double typical_bytes) {
  int size = 0;
  TRIAGE_MPI_CHECK(MPI_Comm_size(comm, &size));
  Fit fit;
  for (int64_t bytes :
       message_sizes(std::max<int64_t>(8, max_bytes / size), int64_t(typical_bytes) / size)) {
    std::vector<char> send(size_t(bytes * size)), receive(size_t(bytes * size));
    std::vector<double> times;
    const int reps = reps_for(bytes * size);
    for (int rep = 0; rep < reps; ++rep) {
      TRIAGE_MPI_CHECK(MPI_Barrier(comm));
      const double start = now_seconds();
      TRIAGE_MPI_CHECK(MPI_Alltoall(send.data(), int(bytes), MPI_CHAR, receive.data(), int(bytes),
                                    MPI_CHAR, comm));
      double t = now_seconds() - start;
      TRIAGE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm));
      times.push_back(t);
    }
    fit.points.emplace_back(double(bytes * (size - 1)), median(times));
  }
  fit.link = model::fit_link(fit.points, typical_bytes);
  return fit;
}

nlohmann::ordered_json to_json(const Fit& fit) {
  return {{"latency_s", fit.link.latency_s},
          {"bandwidth_Bps", fit.link.bandwidth_Bps},
          {"points", fit.points}};
}

// Ping-pong (ranks 0 and 1) and all-to-all on `comm` by the ranks in it (MPI_COMM_NULL on
// the others, which wait without spinning); the all-to-all fit is the model's link.
model::Link measure_link(MPI_Comm comm, int64_t max_bytes, double typical,
                         nlohmann::ordered_json& record) {
  Fit pp, a2a;
  if (comm != MPI_COMM_NULL) {
    pp = ping_pong(comm, 0, 1, max_bytes, typical);
    a2a = all_to_all(comm, max_bytes, typical);
  }
  quiet_barrier(MPI_COMM_WORLD);
  record["ping_pong"] = to_json(pp);
  record["all_to_all"] = to_json(a2a);
  return a2a.link;
}

// The layer alone on each rank (all experts local): median seconds per phase.
std::map<Phase, double> layer_phases(const CalibrateOptions& o, int64_t tokens,
                                     Communicator& self) {
  MoeConfig c;
  c.num_experts = o.experts;
  c.top_k = o.top_k;
  c.d_expert = o.d_expert;
  c.expert_type = ExpertType::kSwiglu;
  c.capacity_factor = 0.0;
  c.expert_gemm = choice_from<ExpertGemm>(o.expert_gemm);
  MoeLayer layer(c, o.d_model, at::kFloat, 7, &self, &self);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  std::map<Phase, std::vector<double>> seconds;
  for (int64_t rep = 0; rep < o.warmup + o.reps; ++rep) {
    at::Tensor x = at::randn({tokens, o.d_model}, gen).requires_grad_(true);
    at::Tensor upstream = at::randn({tokens, o.d_model}, gen);
    for (const auto& p : layer.parameters()) p.tensor.mutable_grad() = at::Tensor();
    TRIAGE_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));  // every slot busy at once
    phase_clock::start({});
    MoeOutput out = layer.forward(x, true);
    at::Tensor objective = (out.y * upstream).sum() + out.balance_loss + out.z_loss;
    phase_clock::enter(Phase::kCombineBwd);
    objective.backward();
    const phase_clock::Totals totals = phase_clock::stop();
    if (rep < o.warmup) continue;
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

double median_seconds(int64_t reps, const std::function<void()>& work) {
  std::vector<double> times;
  for (int64_t rep = 0; rep < reps + 1; ++rep) {
    TRIAGE_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    const double start = now_seconds();
    work();
    if (rep > 0) times.push_back(now_seconds() - start);
  }
  return median(times);
}

int calibrate(const CalibrateOptions& o) {
  const std::vector<RankPlacement> placements = place_ranks(1, false);  // one thread per rank
  int rank = 0, ranks = 1;
  TRIAGE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  TRIAGE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &ranks));
  agree([&] {
    if (o.top_k > o.experts)
      throw Error("--top-k " + std::to_string(o.top_k) + ": expected at most --experts (" +
                  std::to_string(o.experts) + ")");
    if (ranks < 2)
      throw Error("calibrate needs at least 2 ranks (mpirun -n 2 ...) to measure a link");
  });
  auto self = make_mpi_communicator(MPI_COMM_SELF);

  if (rank == 0)
    std::cerr << "[calibrate] compute: the MoE layer on every rank at once" << std::endl;
  const std::map<Phase, double> phase = layer_phases(o, o.tokens, *self);
  auto at = [&](Phase name) { return phase.count(name) ? phase.at(name) : 0.0; };
  const double T = double(o.tokens), K = double(o.top_k), D = double(o.d_model),
               H = double(o.d_expert), E = double(o.experts);
  const double copy_bytes = 2.0 * T * K * D * 4.0, expert_flops = 6.0 * T * K * D * H;

  if (rank == 0) std::cerr << "[calibrate] compute: dense FFN and AdamW update" << std::endl;
  at::Generator init = at::make_generator<at::CPUGeneratorImpl>(5);
  FeedForward dense(o.d_model, o.top_k * o.d_expert, ExpertType::kSwiglu, 0.02, at::kFloat, init);
  at::Tensor x = at::randn({o.tokens, o.d_model}, init);
  const double dense_s = median_seconds(o.reps, [&] {
    at::Tensor input = x.detach().requires_grad_(true);
    dense.forward(input).sum().backward();
  });
  const int64_t n = int64_t(1) << 22;
  at::Tensor w = at::randn({n}, init), g = at::randn({n}, init), m1 = at::zeros({n}),
             m2 = at::zeros({n});
  const double adam_s = median_seconds(o.reps, [&] {  // the update torch's AdamW makes
    m1.mul_(0.9).add_(g, 0.1);
    m2.mul_(0.95).addcmul_(g, g, 0.05);
    w.mul_(1 - 1e-4).addcdiv_(m1, m2.sqrt().add_(1e-8), -1e-3);
  });

  model::Params p;
  // Virtual hosts on one machine share its cores: the caller says how many each gets.
  p.slots_per_host =
      o.slots_per_host > 0 ? o.slots_per_host : double(int(std::thread::hardware_concurrency()));
  // Rates of a rank at full speed: when this host's ranks outnumber its slots, each ran
  // at slots / ranks of it while they all computed at once.
  int host_ranks = 1;
  {
    MPI_Comm node;
    TRIAGE_MPI_CHECK(
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
    TRIAGE_MPI_CHECK(MPI_Comm_size(node, &host_ranks));
    TRIAGE_MPI_CHECK(MPI_Comm_free(&node));
  }
  const double shared = std::max(1.0, double(host_ranks) / p.slots_per_host);
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
    if (rank == 0)
      std::cerr << "[calibrate] compute: experts at " << scale << "x the rows" << std::endl;
    const std::map<Phase, double> scaled =
        scale == 1 ? phase : layer_phases(o, o.tokens * scale, *self);
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
  const double typical = T * K * D * 4.0;  // bytes a rank sends per row exchange

  // Links: ranks of rank 0's host; then one rank per host.
  MPI_Comm host, leaders;
  TRIAGE_MPI_CHECK(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &host));
  int local_rank = 0, local_size = 1;
  TRIAGE_MPI_CHECK(MPI_Comm_rank(host, &local_rank));
  TRIAGE_MPI_CHECK(MPI_Comm_size(host, &local_size));
  TRIAGE_MPI_CHECK(
      MPI_Comm_split(MPI_COMM_WORLD, local_rank == 0 ? 0 : MPI_UNDEFINED, rank, &leaders));
  int hosts = 0;
  if (rank == 0) TRIAGE_MPI_CHECK(MPI_Comm_size(leaders, &hosts));
  TRIAGE_MPI_CHECK(MPI_Bcast(&hosts, 1, MPI_INT, 0, MPI_COMM_WORLD));
  int host0_ranks = local_size;
  TRIAGE_MPI_CHECK(MPI_Bcast(&host0_ranks, 1, MPI_INT, 0, MPI_COMM_WORLD));
  nlohmann::ordered_json measured;
  int on_host0 = rank == 0 ? 1 : 0;  // ranks sharing rank 0's host run the intra-host tests
  {
    std::vector<char> host_name(MPI_MAX_PROCESSOR_NAME, 0), host0(MPI_MAX_PROCESSOR_NAME, 0);
    int length = 0;
    TRIAGE_MPI_CHECK(MPI_Get_processor_name(host_name.data(), &length));
    host0 = host_name;
    TRIAGE_MPI_CHECK(MPI_Bcast(host0.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0, MPI_COMM_WORLD));
    on_host0 = host0 == host_name;
  }
  // Shared memory among as many of rank 0's host's ranks as it has slots (at least 2), so
  // the link is measured unhurried; the oversubscribed case is measured below.
  const int intra_ranks = std::min(host0_ranks, std::max(2, int(p.slots_per_host)));
  MPI_Comm intra;
  TRIAGE_MPI_CHECK(MPI_Comm_split(
      MPI_COMM_WORLD, on_host0 && local_rank < intra_ranks ? 0 : MPI_UNDEFINED, rank, &intra));
  if (host0_ranks >= 2) {
    if (rank == 0)
      std::cerr << "[calibrate] shared memory (" << intra_ranks
                << " ranks): ping-pong and all-to-all, 8 B to " << o.max_bytes << " B" << std::endl;
    p.intra_host = measure_link(intra, o.max_bytes, typical, measured["intra_host"]);
    measured["intra_host"]["ranks"] = intra_ranks;
  }
  if (intra != MPI_COMM_NULL) TRIAGE_MPI_CHECK(MPI_Comm_free(&intra));
  if (hosts >= 2) {
    if (rank == 0)
      std::cerr << "[calibrate] network: ping-pong and all-to-all between " << hosts << " hosts"
                << std::endl;
    p.inter_host = measure_link(local_rank == 0 ? leaders : MPI_COMM_NULL, o.max_bytes, typical,
                                measured["inter_host"]);
    measured["inter_host"]["hosts"] = hosts;
  }
  int any_shared = shared > 1.0;  // every rank must join this all-reduce, shared or not
  TRIAGE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &any_shared, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  if (any_shared) {  // a host's ranks outnumber its slots: collectives wait for the scheduler
    if (rank == 0)
      std::cerr << "[calibrate] oversubscribed hosts: all-to-all over all " << ranks << " ranks"
                << std::endl;
    const Fit world = all_to_all(MPI_COMM_WORLD, o.max_bytes, typical);
    p.oversubscribed = world.link;
    measured["oversubscribed_world"] = {{"ranks", ranks}, {"all_to_all", to_json(world)}};
  }
  if (leaders != MPI_COMM_NULL) TRIAGE_MPI_CHECK(MPI_Comm_free(&leaders));
  TRIAGE_MPI_CHECK(MPI_Comm_free(&host));
  if (rank != 0) return 0;
  if (host0_ranks < 2) {
    // One rank per host: shared memory was not measured; the model needs it only for
    // ranks that share a host, so the network figure stands in (a stated assumption).
    p.intra_host = p.inter_host;
    p.assumptions.push_back("intra_host copied from inter_host: calibrated with one rank per host");
  }

  std::set<std::string> host_names;
  for (const RankPlacement& r : placements) host_names.insert(r.host);
  nlohmann::ordered_json out = model::to_json(p);
  out["calibrated"] = {{"ranks", ranks},
                       {"hosts", host_names.size()},
                       {"threads_per_rank", 1},
                       {"shape",
                        {{"tokens", o.tokens},
                         {"d_model", o.d_model},
                         {"d_expert", o.d_expert},
                         {"experts", o.experts},
                         {"top_k", o.top_k},
                         {"expert_gemm", o.expert_gemm}}},
                       {"layer_phases_s", by_label(phase)},
                       {"links", measured}};
  std::cout << std::scientific << std::setprecision(3) << "# calibration (" << ranks << " ranks, "
            << host_names.size() << " host(s), 1 thread each)\n"
            << "intra-host all-to-all: latency " << p.intra_host.latency_s << " s, bandwidth "
            << p.intra_host.bandwidth_Bps << " B/s\n";
  if (hosts >= 2)
    std::cout << "inter-host all-to-all: latency " << p.inter_host.latency_s << " s, bandwidth "
              << p.inter_host.bandwidth_Bps << " B/s\n";
  std::cout << "expert GEMM forward " << p.expert_forward_flops_per_s << " FLOP/s, backward "
            << p.expert_backward_flops_per_s << " FLOP/s; dense " << p.dense_flops_per_s
            << " FLOP/s\n";
  std::ofstream file(o.out);
  if (!file) throw Error(o.out + ": cannot write the model parameters");
  file << out.dump(2) << "\n";
  std::cerr << "[calibrate] wrote " << o.out << std::endl;
  return 0;
}

}  // namespace

CLI::App* add_calibrate_bench(CLI::App& bench, CalibrateOptions& o) {
  CLI::App* c = bench.add_subcommand(
      "calibrate", "Measure links and compute rates for `bench model` (params file)");
  c->add_option("--tokens", o.tokens, "Tokens per rank of the calibration layer")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--d-model", o.d_model, "Model width")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--d-expert", o.d_expert, "Expert hidden width")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--experts", o.experts, "Experts")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--top-k", o.top_k, "Experts per token")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--expert-gemm", o.expert_gemm, "loop | grouped | auto")
      ->check(CLI::IsMember({"loop", "grouped", "auto"}))
      ->capture_default_str();
  c->add_option("--reps", o.reps, "Timed repetitions")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--max-bytes", o.max_bytes, "Largest message (ping-pong; all-to-all per rank)")
      ->check(CLI::Range(int64_t(8), int64_t(1) << 30))
      ->capture_default_str();
  c->add_option(
       "--slots-per-host", o.slots_per_host,
       "Ranks a host runs at full speed (default: its hardware threads; virtual hosts on one "
       "machine: its cores / the hosts)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--out", o.out, "Params file to write")->required();
  return c;
}

int run_calibrate_bench(const CalibrateOptions& o) {
  return bench::run_under_mpi([&] { return calibrate(o); });
}

}  // namespace triage
