// `triage train CONFIG [--set k=v]... [--out DIR] [--resume | --overwrite] [--stop-after N]`: the
// MPI training program (start it with mpirun, or through ./launch/run).
#include <memory>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "common/exit_codes.h"
#include "config/config.h"
#include "parallel/agreement.h"
#include "parallel/mpi_environment.h"
#include "parallel/nccl_communicator.h"
#include "parallel/watchdog.h"
#include "train/preemption.h"
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
  CLI::App* sub =
      app.add_subcommand("train", "Train an MoE transformer (run under mpirun or ./launch/run)");
  sub->add_option("config", args->config_path, "YAML config file")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--set", args->overrides,
                  "Override a config key: section.key=value (repeatable)");
  sub->add_option("--out", args->options.out_dir,
                  "Output folder: metrics.jsonl, summary.json, checkpoints/")
      ->capture_default_str();
  CLI::Option* resume = sub->add_flag("--resume", args->options.resume,
                                      "Continue from the latest checkpoint in --out");
  sub->add_flag("--overwrite", args->options.overwrite,
                "Start afresh in --out even if it holds an earlier run (its metrics and "
                "checkpoints are deleted)")
      ->excludes(resume);
  sub->add_option(
         "--stop-after", args->options.stop_after,
         "Stop after this step with a checkpoint, as a job time limit would (then --resume)")
      ->check(CLI::Validator(
          [](std::string& text) {
            const bool positive = !text.empty() && text.size() < 19 &&
                                  text.find_first_not_of("0123456789") == std::string::npos &&
                                  std::stoll(text) > 0;
            return positive ? std::string() : text + ": expected a positive whole number";
          },
          "N"));
  return {
      sub, [args] {
        // First, so that a preemption signal during start-up (MPI_Init included) stops the
        // run at its first step boundary instead of killing it.
        preemption::install_handlers();
        MpiEnvironment mpi(nullptr, nullptr);
        // Start-up is watched from here on, at the default timeout until the config says.
        watchdog::start(Config().train.collective_timeout_s, mpi.world_rank(), mpi.world_size());
        try {
          Config config;
          {
            watchdog::Scope phase("start-up: reading the config");
            agree([&] { config = load_config(args->config_path, args->overrides); });
          }
          TrainOptions options = args->options;
          options.gpu_communicator = [timeout = config.train.collective_timeout_s](MPI_Comm comm) {
            return make_nccl_communicator(comm, timeout);
          };
          const TrainResult result = train(config, options);
          return result == TrainResult::kPreempted ? exit_code::kPreempted : exit_code::kDone;
        } catch (const ReportedFailure&) {
          return exit_code::kBadInput;  // printed once already; MPI shuts down cleanly on every
                                        // rank
        }
      }};
}

}  // namespace triage
