// The `triage` subcommands. Each registers its options on the CLI11 app and returns the
// subcommand with the action to run once parsing succeeded; main() owns error reporting.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <utility>

namespace triage {

using Command = std::pair<CLI::App*, std::function<int()>>;

Command add_config_command(CLI::App& app);
Command add_info_command(CLI::App& app);
Command add_bench_command(CLI::App& app);
Command add_train_command(CLI::App& app);
Command add_export_command(CLI::App& app);
Command add_import_command(CLI::App& app);
Command add_logits_command(CLI::App& app);

}  // namespace triage
