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
  std::string open;  // label of the open phase, "" when none
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

void add(Totals& totals, const std::string& label, double seconds) {
  for (auto& [name, total] : totals)
    if (name == label) {
      total += seconds;
      return;
    }
  totals.emplace_back(label, seconds);
}

void close_open_phase() {
  Clock& c = clock();
  if (c.options.device_sync) c.options.device_sync();
  const double t = now();
  if (!c.open.empty()) {
    add(c.totals, c.open, t - c.opened_at);
    add(c.since_lap, c.open, t - c.opened_at);
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
  c.open.clear();
  return c.totals;
}

bool active() { return clock().running; }

void enter(std::string_view label) {
  Clock& c = clock();
  if (!c.running) return;
  close_open_phase();
  c.open = label;
}

const std::string& current() { return clock().open; }

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
  const std::string resume = c.open;
  enter(backward ? "wait bwd" : "wait");
  comm.barrier();
  enter(resume);
}

}  // namespace triage::phase_clock
