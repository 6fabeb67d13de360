// `triage train CONFIG [--set k=v]... [--out DIR] [--resume] [--stop-after N]`: the MPI
// training program (start it with mpirun, or through ./launch/run).
#include <memory>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "config/config.h"
#include "dist/mpi_environment.h"
#include "train/trainer.h"

namespace triage {

namespace {
struct TrainArguments {
  std::string config_path;
  std::vector<std::string> overrides;
  TrainOptions options;
};
}  // namespace

Command add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArguments>();
  CLI::App* sub = app.add_subcommand("train", "Train an MoE transformer (run under mpirun or ./launch/run)");
  sub->add_option("config", args->config_path, "YAML config file")->required()->check(CLI::ExistingFile);
  sub->add_option("--set", args->overrides, "Override a config key: section.key=value (repeatable)");
  sub->add_option("--out", args->options.out_dir, "Output folder: metrics.jsonl, summary.json, checkpoints/")
      ->capture_default_str();
  sub->add_flag("--resume", args->options.resume, "Continue from the latest checkpoint in --out");
  sub->add_option("--stop-after", args->options.stop_after,
                  "Stop after this step with a checkpoint, as a job time limit would (then --resume)")
      ->check(CLI::PositiveNumber);
  return {sub, [args] {
            MpiEnvironment mpi(nullptr, nullptr);
            const Config config = load_config(args->config_path, args->overrides);
            train(config, args->options);
            return 0;
          }};
}

}  // namespace triage
