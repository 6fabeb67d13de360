// The trainer runs as `triage train` would, with phase_clock on: its marks (and the MoE
// layers') name every phase, and each step ends with a lap. Each phase counts in the
// category phases.h gives it, so no phase can be left without one.
#include "bench/step_bench.h"

#include <mpi.h>
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "bench/harness.h"
#include "bench/link_probe.h"
#include "bench/options.h"
#include "bench/timing.h"
#include "common/check.h"
#include "common/error.h"
#include "config/config.h"
#include "cuda/device_query.h"
#include "parallel/agreement.h"
#include "parallel/mpi_environment.h"
#include "parallel/nccl_communicator.h"
#include "parallel/phase_clock.h"
#include "train/trainer.h"

namespace triage {
namespace {

// The categories in the order the tables list them (phases.h says which phase is which).
const std::vector<std::string> kCategories = [] {
  std::vector<std::string> names;
  for (PhaseCategory c :
       {PhaseCategory::kCompute, PhaseCategory::kExchange, PhaseCategory::kWait,
        PhaseCategory::kGradientSync, PhaseCategory::kOptimizer, PhaseCategory::kBookkeeping})
    names.emplace_back(category_label(c));
  return names;
}();

// Per timed step: the slowest rank's step and each category's mean and max over ranks.
struct StepTimes {
  std::vector<double> step_s;
  std::map<std::string, std::vector<double>> mean_s, max_s;
  int ranks = 1;
};

void measure_steps(const Config& config, const StepBenchOptions& o, StepTimes& times) {
  TrainOptions train_options;
  train_options.out_dir = o.run_dir;
  train_options.overwrite = true;
  train_options.gpu_communicator = [timeout = config.train.collective_timeout_s](MPI_Comm comm) {
    return make_nccl_communicator(comm, timeout);
  };
  phase_clock::Options clock;
  clock.wait_for_peers = o.barriers;
  // A GPU runs behind the host: each mark waits for the device, so phases hold work done.
  if (config.train.device == DeviceKind::kCuda) clock.device_sync = [] { synchronize_gpu(); };
  phase_clock::start(clock);
  train(config, train_options);
  phase_clock::stop();
  const std::vector<phase_clock::Totals>& laps = phase_clock::laps();
  TRIAGE_ASSERT(int64_t(laps.size()) == config.train.steps,
                laps.size() << " laps for " << config.train.steps << " steps");
  for (size_t step = size_t(o.warmup); step < laps.size(); ++step) {
    std::map<std::string, double> mine;
    double total = 0;
    for (const auto& [phase, seconds] : laps[step]) {
      mine[std::string(category_label(phase_category(phase)))] += seconds;
      total += seconds;
    }
    for (const std::string& c : kCategories) {
      const std::vector<double> all = bench::gather_from_ranks(mine[c]);
      times.ranks = int(all.size());
      times.mean_s[c].push_back(std::accumulate(all.begin(), all.end(), 0.0) / double(all.size()));
      times.max_s[c].push_back(*std::max_element(all.begin(), all.end()));
    }
    times.step_s.push_back(bench::slowest_rank(total));
  }
}

Config dense_twin_of(Config config) {
  config.model.d_ff = (config.moe.top_k + config.moe.num_shared_experts) * config.moe.d_expert;
  config.moe.first_dense_layers = config.model.n_layers;
  return config;
}

nlohmann::ordered_json categories_json(const StepTimes& t) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const std::string& c : kCategories)
    out.push_back({{"category", c},
                   {"mean_over_ranks_s", bench::median(t.mean_s.at(c))},
                   {"slowest_rank_s", bench::median(t.max_s.at(c))}});
  return out;
}

void print_table(const std::string& title, const StepTimes& t) {
  std::cout << std::fixed << std::setprecision(3) << std::left << std::setw(16) << title
            << std::right << std::setw(12) << "mean ms" << std::setw(12) << "max ms"
            << std::setw(10) << "share"
            << "\n";
  double sum = 0;
  for (const std::string& c : kCategories) sum += bench::median(t.mean_s.at(c));
  for (const std::string& c : kCategories) {
    const double m = bench::median(t.mean_s.at(c));
    std::cout << std::left << std::setw(16) << c << std::right << std::setw(12) << 1e3 * m
              << std::setw(12) << 1e3 * bench::median(t.max_s.at(c)) << std::setw(9)
              << std::setprecision(1) << 100 * m / sum << "%" << std::setprecision(3) << "\n";
  }
  std::cout << std::left << std::setw(16) << "step" << std::right << std::setw(12)
            << 1e3 * bench::median(t.step_s) << "\n";
}

int step_bench(const StepBenchOptions& o) {
  Config config;
  agree([&] { config = load_config(o.config_path, o.overrides); });
  config.train.steps = o.warmup + o.steps;
  config.train.warmup_steps = std::min(config.train.warmup_steps, config.train.steps);
  config.train.eval_every = 0;
  const Config twin = dense_twin_of(config);

  // With a twin, the two alternate round by round so that drift in machine load falls on
  // both alike.
  StepTimes moe, dense, blocking;
  Config after_backward = config;
  after_backward.train.overlap_grad_sync = false;
  if (o.overlap_compare) config.train.overlap_grad_sync = true;
  for (int64_t round = 0; round < (o.dense_twin || o.overlap_compare ? o.rounds : 1); ++round) {
    measure_steps(config, o, moe);
    if (o.dense_twin) measure_steps(twin, o, dense);
    if (o.overlap_compare) measure_steps(after_backward, o, blocking);
  }
  const bench::HostGroups hosts;  // collective: every rank joins
  int rank = 0;
  TRIAGE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  if (rank != 0) return 0;

  nlohmann::ordered_json result = {{"benchmark", "step"},
                                   {"config", o.config_path},
                                   {"overrides", o.overrides},
                                   {"ranks", moe.ranks},
                                   {"hosts", hosts.hosts()},
                                   {"expert_parallel", config.parallel.expert},
                                   {"steps", int64_t(moe.step_s.size())},
                                   {"barriers", o.barriers},
                                   {"step", bench::summary(moe.step_s)},
                                   {"categories", categories_json(moe)}};
  std::cout << "# step benchmark: " << o.config_path << ", " << moe.ranks << " ranks, EP "
            << config.parallel.expert << "; median of " << moe.step_s.size() << " steps"
            << (o.barriers ? " (phases timed with barriers before collectives)"
                           : " (no barriers: waiting for peers counts in the collective's phase)")
            << "\n";
  print_table("category", moe);
  if (o.dense_twin) {
    const double ratio = bench::median(moe.step_s) / bench::median(dense.step_s);
    result["dense_twin"] = {{"d_ff", twin.model.d_ff},
                            {"step", bench::summary(dense.step_s)},
                            {"categories", categories_json(dense)}};
    result["moe_over_dense"] = ratio;
    std::cout << "# dense twin: every block dense, d_ff " << twin.model.d_ff << "; " << o.rounds
              << " alternating rounds\n";
    print_table("dense twin", dense);
    std::cout << "MoE step / dense twin step " << std::setprecision(2) << ratio << "\n";
  }
  if (o.overlap_compare) {
    const std::string sync(category_label(PhaseCategory::kGradientSync));
    const double exposed = bench::median(moe.mean_s.at(sync)),
                 after = bench::median(blocking.mean_s.at(sync));
    const double hidden = after > 0 ? 1 - exposed / after : 0;
    result["sync_after_backward"] = {{"step", bench::summary(blocking.step_s)},
                                     {"categories", categories_json(blocking)}};
    result["gradient_sync_after_backward_s"] = after;
    result["gradient_sync_exposed_s"] = exposed;
    result["hidden_share"] = hidden;
    result["step_after_backward_over_during"] =
        bench::median(blocking.step_s) / bench::median(moe.step_s);
    std::cout << "# the same with the gradient sync started after backward "
                 "(train.overlap_grad_sync false); "
              << o.rounds << " alternating rounds\n";
    print_table("sync after bwd", blocking);
    std::cout << std::setprecision(1) << "gradient sync exposed: " << 1e3 * exposed
              << " ms during backward, " << 1e3 * after << " ms after it: " << 100 * hidden
              << "% hidden; step after / during " << std::setprecision(2)
              << bench::median(blocking.step_s) / bench::median(moe.step_s) << "\n";
  }
  bench::emit_result(o.out, result);
  return 0;
}

}  // namespace

CLI::App* add_step_bench(CLI::App& bench, StepBenchOptions& o) {
  CLI::App* step = bench.add_subcommand(
      "step",
      "Whole training steps of a config: compute, exchange, wait, gradient sync, optimizer");
  bench::add_config_options(*step, o.config_path, o.overrides, true);
  step->add_option("--steps", o.steps, "Timed steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  step->add_option("--warmup", o.warmup, "Untimed steps first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  step->add_option("--run-dir", o.run_dir,
                   "The benchmark's scratch run folder (replaced each time)")
      ->capture_default_str();
  bench::add_out_option(*step, o.out);
  step->add_flag("--dense-twin", o.dense_twin,
                 "Also time the dense twin of equal active FLOPs, alternating with the config");
  step->add_flag("--overlap-compare", o.overlap_compare,
                 "Also time the config with its gradient sync started after backward, "
                 "alternating with the sync started during it: the share backward hides");
  step->add_option("--rounds", o.rounds,
                   "Alternating rounds with --dense-twin or --overlap-compare")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  step->add_flag("!--no-barriers", o.barriers,
                 "No timed barrier before collectives (the true step time; no separate wait)");
  return step;
}

int run_step_bench(const StepBenchOptions& o) {
  return bench::run_under_mpi([&] { return step_bench(o); });
}

}  // namespace triage
