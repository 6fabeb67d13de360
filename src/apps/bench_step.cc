// The trainer runs as `triage train` would, with phase_clock on: its marks (and the MoE
// layers') name every phase, and each step ends with a lap. Phase labels fall into the
// categories below; a label no category names is a bug in this table, not "other".
#include "apps/bench_step.h"

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "apps/bench_stats.h"
#include "common/error.h"
#include "common/mpi_check.h"
#include "config/config.h"
#include "dist/agreement.h"
#include "dist/mpi_environment.h"
#include "dist/phase_clock.h"
#include "train/trainer.h"

namespace triage {
namespace {

const std::vector<std::string> kCategories = {"compute",       "exchange",  "wait",
                                              "gradient sync", "optimizer", "bookkeeping"};

const std::string& category_of(const std::string& phase) {
  static const std::map<std::string, std::string> kCategoryOf = {
      {"compute", "compute"},
      {"compute bwd", "compute"},
      {"route", "compute"},
      {"sort/pack", "compute"},
      {"experts", "compute"},
      {"combine", "compute"},
      {"combine bwd", "compute"},
      {"experts bwd", "compute"},
      {"sort/pack + route bwd", "compute"},
      {"count exchange", "exchange"},
      {"dispatch rows", "exchange"},
      {"combine rows", "exchange"},
      {"combine rows bwd", "exchange"},
      {"dispatch rows bwd", "exchange"},
      {"wait", "wait"},
      {"wait bwd", "wait"},
      {"gradient sync", "gradient sync"},
      {"gradient clip", "optimizer"},
      {"optimizer", "optimizer"},
      {"statistics", "bookkeeping"},
  };
  const auto found = kCategoryOf.find(phase);
  TRIAGE_ASSERT(found != kCategoryOf.end(),
                "phase '" << phase << "' has no category in bench step");
  return found->second;
}

int step_bench(const StepBenchOptions& o) {
  Config config;
  agree([&] { config = load_config(o.config_path, o.overrides); });
  config.train.steps = o.warmup + o.steps;
  config.train.warmup_steps = std::min(config.train.warmup_steps, config.train.steps);
  config.train.eval_every = 0;
  TrainOptions train_options;
  train_options.out_dir = o.run_dir;
  train_options.overwrite = true;

  phase_clock::start({});
  train(config, train_options);
  phase_clock::stop();
  const std::vector<phase_clock::Totals>& laps = phase_clock::laps();
  TRIAGE_ASSERT(int64_t(laps.size()) == config.train.steps,
                laps.size() << " laps for " << config.train.steps << " steps");

  // Per timed step: each category's seconds, mean and max over the ranks.
  std::map<std::string, std::vector<double>> mean_s, max_s;
  std::vector<double> step_s;
  int ranks = 1;
  for (size_t step = size_t(o.warmup); step < laps.size(); ++step) {
    std::map<std::string, double> mine;
    double total = 0;
    for (const auto& [phase, seconds] : laps[step]) {
      mine[category_of(phase)] += seconds;
      total += seconds;
    }
    for (const std::string& c : kCategories) {
      const std::vector<double> all = bench::gather_from_ranks(mine[c]);
      ranks = int(all.size());
      mean_s[c].push_back(std::accumulate(all.begin(), all.end(), 0.0) / double(all.size()));
      max_s[c].push_back(*std::max_element(all.begin(), all.end()));
    }
    step_s.push_back(bench::slowest_rank(total));
  }
  int rank = 0;
  TRIAGE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  if (rank != 0) return 0;

  nlohmann::ordered_json result = {{"benchmark", "step"},
                                   {"config", o.config_path},
                                   {"overrides", o.overrides},
                                   {"ranks", ranks},
                                   {"expert_parallel", config.parallel.expert},
                                   {"steps", o.steps},
                                   {"step", bench::summary(step_s)}};
  std::cout << "# step benchmark: " << o.config_path << ", " << ranks << " ranks, EP "
            << config.parallel.expert << "; median of " << o.steps
            << " steps (phases timed with barriers before collectives)\n"
            << std::fixed << std::setprecision(3) << std::left << std::setw(16) << "category"
            << std::right << std::setw(12) << "mean ms" << std::setw(12) << "max ms"
            << std::setw(10) << "share"
            << "\n";
  double sum = 0;
  for (const std::string& c : kCategories) sum += bench::median(mean_s[c]);
  for (const std::string& c : kCategories) {
    const double m = bench::median(mean_s[c]);
    result["categories"].push_back(
        {{"category", c}, {"mean_over_ranks_s", m}, {"slowest_rank_s", bench::median(max_s[c])}});
    std::cout << std::left << std::setw(16) << c << std::right << std::setw(12) << 1e3 * m
              << std::setw(12) << 1e3 * bench::median(max_s[c]) << std::setw(9)
              << std::setprecision(1) << 100 * m / sum << "%" << std::setprecision(3) << "\n";
  }
  std::cout << std::left << std::setw(16) << "step" << std::right << std::setw(12)
            << 1e3 * bench::median(step_s) << "\n";
  bench::emit_result(o.out, result);
  return 0;
}

}  // namespace

CLI::App* add_step_bench(CLI::App& bench, StepBenchOptions& o) {
  CLI::App* step = bench.add_subcommand(
      "step",
      "Whole training steps of a config: compute, exchange, wait, gradient sync, optimizer");
  step->add_option("config", o.config_path, "YAML config file")
      ->required()
      ->check(CLI::ExistingFile);
  step->add_option("--set", o.overrides, "Override a config key: section.key=value (repeatable)");
  step->add_option("--steps", o.steps, "Timed steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  step->add_option("--warmup", o.warmup, "Untimed steps first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  step->add_option("--run-dir", o.run_dir,
                   "The benchmark's scratch run folder (replaced each time)")
      ->capture_default_str();
  step->add_option("--out", o.out, "Append the JSON line to this file (default: stdout)");
  return step;
}

int run_step_bench(const StepBenchOptions& o) {
  return bench::run_under_mpi([&] { return step_bench(o); });
}

}  // namespace triage
