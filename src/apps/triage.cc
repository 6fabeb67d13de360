// `triage`: the single Triage executable. Subcommands live in *_command.cc files.
// Exit codes: the table in common/exit_codes.h, which ./launch/run and the README share.
#include <c10/util/Exception.h>

#include <iostream>
#include <vector>

#include "apps/commands.h"
#include "common/allocator.h"
#include "common/check.h"
#include "common/error.h"
#include "common/exit_codes.h"
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
    return triage::exit_code::kBadCommandLine;
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
    return fail(std::string("error: ") + e.what(), triage::exit_code::kBadInput);
  } catch (const triage::LibraryCallFailed& e) {  // CUDA, NCCL or MPI: the device or network
    return fail(std::string("error: ") + e.what(), triage::exit_code::kDeviceError);
  } catch (const c10::AcceleratorError& e) {  // a CUDA fault LibTorch saw first
    return fail(std::string("error: ") + e.what_without_backtrace(),
                triage::exit_code::kDeviceError);
  } catch (const std::exception& e) {  // a bug, not the user's mistake: say so
    return fail(std::string("triage: internal error: ") + e.what(),
                triage::exit_code::kInternalError);
  }
  return triage::exit_code::kBadCommandLine;
}
