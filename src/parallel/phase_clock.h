// Where the time goes, for benchmarks: code marks the start of each phase with
// phase_clock::enter(Phase::kRoute), and the time until the next mark is added to that
// phase (phases.h names them all).
// Nothing records unless a benchmark starts the clock; then a collective can first wait
// for its peers in a timed barrier ("wait"), so its own phase holds only the transfer and
// the imbalance between ranks shows up as waiting.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/phases.h"
#include "parallel/watchdog.h"

namespace triage::phase_clock {

// Seconds per phase, in the order each phase was first entered.
using Totals = std::vector<std::pair<Phase, double>>;

struct Options {
  bool wait_for_peers = true;         // time a barrier before each marked collective (on the
                                      // thread that started the clock: MPI is FUNNELED)
  std::function<void()> device_sync;  // called at every mark (a GPU runs asynchronously)
};

void start(const Options& options);  // clears the totals and laps; no phase is open
Totals stop();                       // closes the open phase; the totals since start
bool active();

// Closes the open phase (if any) and opens `phase`. A no-op unless the clock runs.
void enter(Phase phase);
std::optional<Phase> current();  // the open phase; none when none is open
// Closes the open phase and opens `phase` again, as current() returned it (none: closes).
void resume(std::optional<Phase> phase);

// The totals since the previous lap (or start), kept in laps(); the open phase carries on.
void lap();
const std::vector<Totals>& laps();

// Before a collective on `comm`: with wait_for_peers, a barrier timed as "wait" (or
// "wait bwd" when `backward`), then the phase that was open resumes.
void wait_for_peers(Communicator& comm, bool backward = false);

// Around one collective on `comm`, for its lifetime: opens `phase` after a timed wait for
// its peers (as wait_for_peers; "wait bwd" before a backward phase) and names it to the
// watchdog, by `label` or else the phase's own name.
class CollectiveScope {
 public:
  CollectiveScope(Phase phase, Communicator& comm, const std::string& label = {});

 private:
  watchdog::Scope watched_;
};

}  // namespace triage::phase_clock
