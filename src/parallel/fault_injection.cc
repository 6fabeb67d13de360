// Parses TRIAGE_FAULT once and acts at the matching point; see the header.
#include "parallel/fault_injection.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <regex>
#include <string>
#include <thread>

#include "common/error.h"
#include "parallel/watchdog.h"

namespace triage::fault {
namespace {

struct Fault {
  bool active = false;
  std::string kind;
  int rank = 0;
  int64_t step = 0;
};

Fault parse() {
  Fault f;
  const char* text = std::getenv("TRIAGE_FAULT");
  if (!text || !*text) return f;
  static const std::regex kForm(
      R"((stall|exit|exit_in_checkpoint|stall_in_startup):rank=(\d{1,6}):step=(\d{1,12}))");
  std::cmatch m;
  if (!std::regex_match(text, m, kForm))
    throw Error(std::string("TRIAGE_FAULT = ") + text +
                ": expected stall|exit|exit_in_checkpoint|stall_in_startup:rank=R:step=S (a "
                "testing tool)");
  f.active = true;
  f.kind = m[1];
  f.rank = std::stoi(m[2]);
  f.step = std::stoll(m[3]);
  return f;
}

}  // namespace

void inject(Point point, int rank, int64_t step) {
  static const Fault fault = parse();
  if (!fault.active || fault.rank != rank || fault.step != step) return;
  const bool at_step = point == Point::kStepStart;
  if ((fault.kind == "stall" && at_step) ||
      (fault.kind == "stall_in_startup" && point == Point::kStartup)) {
    const std::string where = at_step ? "at step " + std::to_string(step) : "in start-up";
    watchdog::Scope scope("stalled by TRIAGE_FAULT " + where);
    std::cerr << "[rank " << rank << "] TRIAGE_FAULT: stalling " << where << std::endl;
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  }
  if ((fault.kind == "exit" && at_step) ||
      (fault.kind == "exit_in_checkpoint" && point == Point::kCheckpointFileWritten)) {
    std::cerr << "[rank " << rank << "] TRIAGE_FAULT: exiting at step " << step << std::endl;
    _exit(kInjectedExitCode);
  }
}

}  // namespace triage::fault
