// `triage bench calibrate` (under mpirun): measures what the scaling model needs and writes
// it as a params file. Compute: every rank at once runs the MoE layer alone (all experts
// local, phase_clock on), a dense FFN and an AdamW update, one thread each, so the rates
// are those of a host whose slots are all busy. Links: ping-pong and all-to-all from 8 B
// per message up to --max-bytes, among the ranks of rank 0's host (shared memory) and
// among one rank per host (the network), fitted by link_probe. With a config, every rank
// also runs that config's whole model and optimizer (all experts local, its own data) over
// its slice of a step, and what that takes beyond the layer rates' prediction for its MoE
// layers rates the dense part: at a small model's shapes (head widths of 16, a 24-token
// vocabulary) attention, norms and the head run far below a GEMM's FLOP rate, which a
// dense FFN alone misses.
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
#include "bench/step_shape.h"
#include "bench/timing.h"
#include "common/check.h"
#include "common/error.h"
#include "common/parameters.h"
#include "config/config.h"
#include "data/dataset.h"
#include "model/feed_forward.h"
#include "model/transformer.h"
#include "moe/moe_layer.h"
#include "parallel/agreement.h"
#include "parallel/mpi_communicator.h"
#include "parallel/phase_clock.h"
#include "parallel/placement.h"
#include "train/objective.h"
#include "train/optimizer.h"

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

// The config's model on every rank at once (all experts local; one rank's slice of a step's
// batch, its micro-batches, forward + loss + backward, as the trainer runs them): sets
// p.dense_flops_per_s from what the step's compute takes beyond its MoE layers' predicted
// compute, and p.optimizer_bytes_per_s from an AdamW update of the model's own parameters.
// Returns what it measured, for the params file.
nlohmann::ordered_json measure_dense_step(const CalibrateOptions& o, Communicator& world,
                                          double shared, model::Params& p) {
  Config config = load_config(o.config_path, o.overrides);
  const bool lm = config.train.loss != Loss::kClassify, classify = config.train.loss != Loss::kLm;
  // The job's own data, as the trainer reads it: real lengths and padding, and the classes
  // that model.num_classes: auto resolves to.
  const Dataset data = load_dataset(config.data, uint64_t(config.train.seed));
  if (data.train.empty())
    throw Error(o.config_path + ": calibrate: the data has no training examples");
  if (config.model.num_classes == kAutoClasses)
    config.model.num_classes = classify ? int64_t(data.label_names.size()) : 0;
  const at::ScalarType dtype = config.train.dtype == DType::kFloat64 ? at::kDouble : at::kFloat;
  const int64_t ranks = world.size(), length = config.data.seq_len;
  const int64_t slice = std::max<int64_t>(1, config.train.batch_size / ranks);
  const int64_t micro_batches = config.train.grad_accum_steps;
  // All experts on this rank, through the same expert-parallel code as the layer rates.
  auto self = make_mpi_communicator(MPI_COMM_SELF);
  config.parallel.expert = 1;
  Transformer transformer(config, dtype, self.get(), self.get());
  const ParameterList parameters = transformer.parameters();
  const auto optimizer = make_optimizer(parameters, config.train);
  if (world.rank() == 0)
    std::cerr << "[calibrate] compute: " << o.config_path << "'s model and optimizer, " << slice
              << " x " << length << " tokens x " << micro_batches << " micro-batch(es) per rank"
              << std::endl;
  // Consecutive slices of the training examples, this rank's share of each step's batch.
  int64_t next = world.rank() * slice;
  auto batch = [&] {
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < slice; ++i) rows.push_back(next++ % data.train.size());
    next += (ranks - 1) * slice;
    return make_batch(data.train, rows, length);
  };
  const double step_s = median_seconds(o.repetitions.reps, world, [&] {
    optimizer->zero_grad();
    for (int64_t micro = 0; micro < micro_batches; ++micro) {
      const Batch b = batch();
      const ModelOutput out = transformer.forward(b.tokens_BL, b.real_BL, true);
      at::Tensor objective = out.balance_loss + out.z_loss;
      if (lm)
        objective =
            objective + token_cross_entropy_sum(out.lm_logits_BLV, b.targets_BL, b.target_BL) /
                            double(slice * length);
      if (classify)
        objective =
            objective + sequence_cross_entropy_sum(out.class_logits_BC, b.labels_B) / double(slice);
      objective.backward();
    }
  });
  // The update of this model's own parameters: per-tensor costs included, which a flat
  // buffer's rate misses.
  const double optimizer_s = median_seconds(o.repetitions.reps, world, [&] { optimizer->step(); });
  double parameter_count = 0;
  for (const auto& parameter : parameters) parameter_count += double(parameter.tensor.numel());
  p.optimizer_bytes_per_s =
      model::kAdamWBytesPerParameter * parameter_count / (optimizer_s / shared);
  const int64_t tokens_per_rank = slice * micro_batches * length;
  const model::StepShape shape = step_shape(config, tokens_per_rank, 1);
  const std::vector<double> uniform(size_t(config.moe.num_experts),
                                    1.0 / double(config.moe.num_experts));
  const double moe_s =
      double(shape.moe_layers) * model::predict_layer(p, {1, 1, 1}, shape.moe, uniform).total_s;
  // Rates are of a rank at full speed: the measured time at `shared` ranks per slot.
  const double dense_s = step_s / shared - moe_s;
  nlohmann::ordered_json measured = {{"config", o.config_path},
                                     {"overrides", o.overrides},
                                     {"tokens_per_rank", tokens_per_rank},
                                     {"step_compute_s", step_s},
                                     {"optimizer_s", optimizer_s},
                                     {"predicted_moe_compute_s", moe_s * shared}};
  if (dense_s < 0.05 * step_s / shared) {
    // The MoE layers' predicted compute leaves almost nothing: rating the dense part from
    // the remainder would divide by noise, so the dense FFN's rate stands.
    measured["dense_rate_from"] = "dense FFN (the config's MoE layers are nearly all of it)";
    return measured;
  }
  p.dense_flops_per_s = model::dense_step_flops(shape) / dense_s;
  measured["dense_rate_from"] = "the config's model";
  measured["dense_s"] = dense_s * shared;
  return measured;
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
  nlohmann::ordered_json dense_step;
  if (!o.config_path.empty()) dense_step = measure_dense_step(o, *world, shared, p);
  // Every rank joins this all-reduce, shared or not: the world all-to-all needs them all.
  at::Tensor any_shared = at::full({1}, shared > 1.0 ? 1.0 : 0.0, at::kDouble);
  world->allreduce_sum_(any_shared);
  nlohmann::ordered_json links = measure_links(o, groups, *world, any_shared.item<double>() > 0, p);
  if (o.link_burst > 0 && groups.hosts() >= 2) {
    p.inter_host.burst_bytes = o.link_burst;
    p.assumptions.push_back("inter_host burst_bytes stated (--link-burst): a token bucket passes " +
                            std::to_string(int64_t(o.link_burst)) +
                            " bytes per message at the unshaped speed");
  }
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
                       {"dense_step", dense_step},
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
  c->add_option("--link-burst", o.link_burst,
                "Bytes a shaped network link passes per message at its unshaped speed (a token "
                "bucket's burst, e.g. the virtual hosts' --rate); stated, 0 for plain links")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  bench::add_config_options(*c, o.config_path, o.overrides, /*required=*/false,
                            "Optional YAML config whose own model rates the dense part of a step");
  c->add_option("--out", o.out, "Params file to write")->required();
  return c;
}

int run_calibrate_bench(const CalibrateOptions& o) {
  return bench::run_under_mpi([&] { return calibrate(o); });
}

}  // namespace triage
