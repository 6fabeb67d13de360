// One process-wide clock: the layer code marks phases without being handed a timer,
// and the marks cost one branch when no benchmark runs.
#include "parallel/phase_clock.h"

#include <chrono>
#include <thread>

namespace triage::phase_clock {
namespace {

struct Clock {
  bool running = false;
  Options options;
  std::optional<Phase> open;
  double opened_at = 0;
  Totals totals, since_lap;
  std::vector<Totals> laps;
  std::thread::id started_on;  // the MPI thread: the only one that may call MPI (FUNNELED)
};

Clock& clock() {
  static Clock c;
  return c;
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void add(Totals& totals, Phase phase, double seconds) {
  for (auto& [entered, total] : totals)
    if (entered == phase) {
      total += seconds;
      return;
    }
  totals.emplace_back(phase, seconds);
}

void close_open_phase() {
  Clock& c = clock();
  if (c.options.device_sync) c.options.device_sync();
  const double t = now();
  if (c.open) {
    add(c.totals, *c.open, t - c.opened_at);
    add(c.since_lap, *c.open, t - c.opened_at);
  }
  c.opened_at = t;
}

}  // namespace

void start(const Options& options) {
  Clock& c = clock();
  c = Clock{};
  c.running = true;
  c.options = options;
  c.opened_at = now();
  c.started_on = std::this_thread::get_id();
}

Totals stop() {
  Clock& c = clock();
  if (!c.running) return {};
  close_open_phase();
  c.running = false;
  c.open.reset();
  return c.totals;
}

bool active() { return clock().running; }

void enter(Phase phase) { resume(phase); }

std::optional<Phase> current() { return clock().open; }

void resume(std::optional<Phase> phase) {
  Clock& c = clock();
  if (!c.running) return;
  close_open_phase();
  c.open = phase;
}

void lap() {
  Clock& c = clock();
  if (!c.running) return;
  close_open_phase();
  c.laps.push_back(std::move(c.since_lap));
  c.since_lap.clear();
}

const std::vector<Totals>& laps() { return clock().laps; }

void wait_for_peers(Communicator& comm, bool backward) {
  Clock& c = clock();
  if (!c.running || !c.options.wait_for_peers) return;
  // LibTorch runs a GPU backward on its own device thread, where no MPI call is legal:
  // there the wait stays inside the collective's phase.
  if (std::this_thread::get_id() != c.started_on) return;
  const std::optional<Phase> was_open = c.open;
  enter(backward ? Phase::kWaitBwd : Phase::kWait);
  comm.barrier();
  resume(was_open);
}

CollectiveScope::CollectiveScope(Phase phase, Communicator& comm, const std::string& label)
    : watched_(label.empty() ? std::string(phase_label(phase)) : label) {
  enter(phase);
  wait_for_peers(comm, is_backward(phase));
}

}  // namespace triage::phase_clock
