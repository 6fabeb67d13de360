// Where the time goes, for benchmarks: code marks the start of each phase with
// phase_clock::enter("label"), and the time until the next mark is added to that label.
// Nothing records unless a benchmark starts the clock; then a collective can first wait
// for its peers in a timed barrier ("wait"), so its own phase holds only the transfer and
// the imbalance between ranks shows up as waiting.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "parallel/communicator.h"

namespace triage::phase_clock {

// Seconds per phase label, in the order each label was first entered.
using Totals = std::vector<std::pair<std::string, double>>;

struct Options {
  bool wait_for_peers = true;         // time a barrier before each marked collective (on the
                                      // thread that started the clock: MPI is FUNNELED)
  std::function<void()> device_sync;  // called at every mark (a GPU runs asynchronously)
};

void start(const Options& options);  // clears the totals and laps; no phase is open
Totals stop();                       // closes the open phase; the totals since start
bool active();

// Closes the open phase (if any) and opens `label`. A no-op unless the clock runs.
void enter(std::string_view label);
const std::string& current();  // the open phase's label; empty when none

// The totals since the previous lap (or start), kept in laps(); the open phase carries on.
void lap();
const std::vector<Totals>& laps();

// Before a collective on `comm`: with wait_for_peers, a barrier timed as "wait" (or
// "wait bwd" when `backward`), then the phase that was open resumes.
void wait_for_peers(Communicator& comm, bool backward = false);

}  // namespace triage::phase_clock
