// `triage bench ...`: the benchmark subcommands, each from the benchmark library (src/bench/),
// registered here and run once parsing picked one.
#include <memory>
#include <vector>

#include "apps/commands.h"
#include "bench/calibrate_bench.h"
#include "bench/checkpoint_bench.h"
#include "bench/exchange_bench.h"
#include "bench/layer_bench.h"
#include "bench/model_bench.h"
#include "bench/moe_layer_bench.h"
#include "bench/reader_bench.h"
#include "bench/step_bench.h"

namespace triage {
namespace {

// One subcommand's options, kept alive with the parser, and how to run it.
template <class Options>
std::pair<CLI::App*, std::function<int()>> bench_subcommand(CLI::App& bench,
                                                            CLI::App* (*add)(CLI::App&, Options&),
                                                            int (*run)(const Options&)) {
  auto options = std::make_shared<Options>();
  CLI::App* sub = add(bench, *options);
  return {sub, [options, run] { return run(*options); }};
}

}  // namespace

Command add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks (run under mpirun); JSON out");
  bench->require_subcommand(1);
  const std::vector<std::pair<CLI::App*, std::function<int()>>> subcommands = {
      bench_subcommand(*bench, add_exchange_bench, run_exchange_bench),
      bench_subcommand(*bench, add_moe_layer_bench, run_moe_layer_bench),
      bench_subcommand(*bench, add_layer_bench, run_layer_bench),
      bench_subcommand(*bench, add_step_bench, run_step_bench),
      bench_subcommand(*bench, add_checkpoint_bench, run_checkpoint_bench),
      bench_subcommand(*bench, add_calibrate_bench, run_calibrate_bench),
      bench_subcommand(*bench, add_model_bench, run_model_bench),
      bench_subcommand(*bench, add_reader_bench, run_reader_bench),
  };
  return {bench, [subcommands] {
            for (const auto& [sub, run] : subcommands)
              if (sub->parsed()) return run();
            return 1;  // unreachable: require_subcommand(1)
          }};
}

}  // namespace triage
