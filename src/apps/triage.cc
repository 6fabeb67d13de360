// `triage`: the single Triage executable. Subcommands live in *_command.cc files.
// Exit codes: 0 success, 1 a user error (bad config, file, ...), 2 a bad command line,
// 3 an internal error (a bug: please report it).
#include <iostream>
#include <vector>

#include "apps/commands.h"
#include "common/allocator.h"
#include "common/error.h"
#include "parallel/mpi_environment.h"

int main(int argc, char** argv) {
  triage::keep_freed_memory();
  CLI::App app{"Triage: Mixture-of-Experts training with expert parallelism", "triage"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("triage ") + TRIAGE_VERSION);
  std::vector<triage::Command> commands = {
      triage::add_config_command(app), triage::add_info_command(app),
      triage::add_bench_command(app),  triage::add_train_command(app),
      triage::add_export_command(app), triage::add_import_command(app),
      triage::add_logits_command(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::cerr << "triage: " << e.what() << " (see triage --help)\n";
    return 2;
  }
  // In an MPI job a failing rank aborts every rank, so none is left waiting in a collective.
  auto fail = [](const std::string& message, int exit_code) {
    if (triage::in_multi_rank_job()) triage::abort_job(message, exit_code);
    std::cerr << message << "\n";
    return exit_code;
  };
  try {
    for (auto& [subcommand, run] : commands)
      if (subcommand->parsed()) return run();
  } catch (const triage::Error& e) {
    return fail(std::string("error: ") + e.what(), 1);
  } catch (const std::exception& e) {  // a bug, not the user's mistake: say so
    return fail(std::string("triage: internal error: ") + e.what(), 3);
  }
  return 2;
}
