// Activity labels and the watching thread; see the header. The thread never calls MPI
// (MPI is initialised FUNNELED): it ends this process with _exit, and mpirun, seeing a rank
// die, ends every other rank of the job.
#include "parallel/watchdog.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

namespace triage::watchdog {
namespace {

using Clock = std::chrono::steady_clock;

struct State {
  std::mutex mutex;
  std::vector<std::string> labels;
  const char* collective = nullptr;  // in flight, or nullptr
  Clock::time_point collective_since;
  // The watching thread, and the one that writes this rank's status file.
  std::thread thread, writer;
  double timeout_s = 600;
  double period_s = 0.5;
  std::string dir;  // status files, "" while none are kept
  int rank = 0, world_size = 1;
  std::condition_variable wake;
  bool stopping = false;
};

State& state() {
  static State* s = new State;  // never destroyed: the thread may outlive static teardown
  return *s;
}

std::string joined(const std::vector<std::string>& labels) {
  std::string text;
  for (const auto& l : labels) text += (text.empty() ? "" : ", ") + l;
  return text.empty() ? "starting up" : text;
}

std::string status_path(const std::string& dir, int rank) {
  char name[32];
  std::snprintf(name, sizeof name, "rank-%05d.txt", rank);
  return dir + "/" + name;
}

// "<beat> <what>": beat counts this rank's writes, so a reader tells a live rank from a
// dead one by seeing it move, with no clock shared across hosts. Written to a temporary
// file and renamed, so readers never see half a line.
void write_status(const std::string& dir, int rank, uint64_t beat, const std::string& what) {
  const std::string path = status_path(dir, rank);
  {
    std::ofstream out(path + ".tmp");
    out << beat << " " << what << "\n";
  }
  std::error_code ignored;
  std::filesystem::rename(path + ".tmp", path, ignored);
}

// Another rank's status, read twice a few write periods apart.
struct PeerStatus {
  bool known = false;    // the file exists and parses
  bool beating = false;  // its beat moved between the two reads: its process is alive
  std::string what;
  // Waiting in a collective and alive: stuck behind someone else, like this rank.
  bool waiting_and_alive() const { return known && beating && what.rfind("in ", 0) == 0; }
};

bool read_line(const std::string& dir, int rank, uint64_t& beat, std::string& what) {
  std::ifstream in(status_path(dir, rank));
  return bool(in >> beat) && bool(std::getline(in >> std::ws, what));
}

std::vector<PeerStatus> read_statuses(const std::string& dir, const std::vector<int>& ranks,
                                      double write_period_s) {
  if (ranks.empty()) return {};
  std::vector<uint64_t> first(ranks.size(), 0);
  std::vector<bool> seen(ranks.size(), false);
  std::string ignored;
  for (size_t i = 0; i < ranks.size(); ++i) seen[i] = read_line(dir, ranks[i], first[i], ignored);
  // A live rank writes at least once in any 2 periods.
  std::this_thread::sleep_for(std::chrono::duration<double>(2 * write_period_s));
  std::vector<PeerStatus> out(ranks.size());
  for (size_t i = 0; i < ranks.size(); ++i) {
    uint64_t beat = 0;
    out[i].known = read_line(dir, ranks[i], beat, out[i].what);
    out[i].beating = out[i].known && (!seen[i] || beat != first[i]);
  }
  return out;
}

// Ranks that may report a timeout for everyone: the lowest few. A waiting rank defers to a
// lower one of them that is waiting and alive, so a timeout is explained once; reading at
// most this many files keeps a timeout at 1,000 ranks from making a million reads.
constexpr int kReporters = 4;

// Runs `work` on a helper thread and waits for it at most `limit_s`: a hung filesystem
// must not stop a rank from ending the job. Returns whether it finished.
bool within(double limit_s, const std::function<void()>& work) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread([work, done] {
    work();
    done->store(true);
  }).detach();
  const auto until = Clock::now() + std::chrono::duration<double>(limit_s);
  while (!done->load() && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return done->load();
}

// Writes this rank's status every write period on its own thread, off the watching
// thread's path: a slow or hung filesystem delays the file, never the timeout.
void write_statuses() {
  State& s = state();
  const std::string dir = s.dir;
  const int rank = s.rank;
  const double period_s = s.period_s;
  uint64_t beat = 0;
  std::unique_lock<std::mutex> lock(s.mutex);
  while (!s.stopping) {
    const std::string label = joined(s.labels);
    const char* collective = s.collective;
    const double waited =
        collective ? std::chrono::duration<double>(Clock::now() - s.collective_since).count() : 0.0;
    lock.unlock();
    const std::string what = collective ? "in " + std::string(collective) + " for " +
                                              std::to_string(int(waited)) + " s: " + label
                                        : "working: " + label;
    write_status(dir, rank, ++beat, what);
    lock.lock();
    s.wake.wait_for(lock, std::chrono::duration<double>(period_s));
  }
}

void watch() {
  State& s = state();
  std::unique_lock<std::mutex> lock(s.mutex);
  while (!s.stopping) {
    s.wake.wait_for(lock, std::chrono::milliseconds(500));
    if (s.stopping) break;
    const double timeout_s = s.timeout_s, period_s = s.period_s;
    const std::string dir = s.dir;
    const int rank = s.rank, world_size = s.world_size;
    // The timeout is checked first, from memory only.
    const char* collective = s.collective;
    const double waited =
        collective ? std::chrono::duration<double>(Clock::now() - s.collective_since).count() : 0.0;
    if (!collective || waited <= timeout_s) continue;
    const std::string label = joined(s.labels);
    lock.unlock();
    // Peers' files are read only now, bounded in time and in how many.
    std::string others;
    bool defer = false;
    if (!dir.empty()) {
      auto text = std::make_shared<std::string>();
      auto lower_reporter = std::make_shared<bool>(false);
      const bool read = within(3 * period_s + 5, [=] {
        std::vector<int> reporters;
        for (int r = 0; r < std::min(rank, kReporters); ++r) reporters.push_back(r);
        const std::vector<PeerStatus> lower = read_statuses(dir, reporters, period_s);
        for (const PeerStatus& p : lower)
          *lower_reporter = *lower_reporter || p.waiting_and_alive();
        if (*lower_reporter) return;
        std::vector<int> peers;
        for (int r = 0; r < world_size; ++r)
          if (r != rank) peers.push_back(r);
        const std::vector<PeerStatus> all = read_statuses(dir, peers, period_s);
        std::ostringstream out, suspects;
        for (size_t i = 0; i < peers.size(); ++i) {
          out << "; rank " << peers[i] << ": "
              << (all[i].known ? all[i].what + (all[i].beating ? "" : " (no longer updated)")
                               : "no status file");
          if (!all[i].waiting_and_alive())
            suspects << (suspects.tellp() > 0 ? ", " : "") << peers[i];
        }
        const std::string named = suspects.str();
        *text = (named.empty() ? "" : "; look at rank(s) " + named) + out.str();
      });
      // Unfinished, the helper may still be writing them: read only what it finished.
      defer = read && *lower_reporter;
      others = read ? *text : "; peers' status files did not answer in time (a hung filesystem?)";
    }
    if (defer) {
      // A lower rank reports and mpirun ends the job; should it not, this rank does later.
      std::this_thread::sleep_for(std::chrono::seconds(10));
    }
    std::ostringstream message;
    message << "[rank " << rank << "] error: collective timeout: " << collective << " at '" << label
            << "' not done after " << int(waited)
            << " s (train.collective_timeout_s = " << timeout_s << "); a rank stopped taking part"
            << others << "\n";
    std::cerr << message.str() << std::flush;
    _exit(exit_code::kCollectiveTimeout);
  }
}

}  // namespace

Scope::Scope(std::string label) {
  std::lock_guard<std::mutex> lock(state().mutex);
  state().labels.push_back(std::move(label));
}

Scope::~Scope() {
  std::lock_guard<std::mutex> lock(state().mutex);
  state().labels.pop_back();
}

InCollective::InCollective(const char* operation) {
  std::lock_guard<std::mutex> lock(state().mutex);
  outer_ = state().collective;
  outer_since_ = state().collective_since;
  state().collective = operation;
  if (!outer_) state().collective_since = Clock::now();
}

InCollective::~InCollective() {
  std::lock_guard<std::mutex> lock(state().mutex);
  state().collective = outer_;
  state().collective_since = outer_since_;
}

std::string current_label() {
  std::lock_guard<std::mutex> lock(state().mutex);
  return joined(state().labels);
}

void start(double timeout_s, int rank, int world_size) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.timeout_s = timeout_s;
  // Rarely: an eighth of the timeout, between a quarter of a second and 10 s (1,000 ranks
  // at the default 600 s timeout make 200 file operations a second, not 4,000).
  s.period_s = std::clamp(timeout_s / 8, 0.25, 10.0);
  if (s.thread.joinable()) return;
  s.rank = rank;
  s.world_size = world_size;
  s.stopping = false;
  s.thread = std::thread(watch);
}

void keep_status_files(const std::string& status_dir) {
  State& s = state();
  std::filesystem::create_directories(status_dir);
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.writer.joinable() || !s.thread.joinable()) return;
  s.dir = status_dir;
  s.writer = std::thread(write_statuses);
}

void stop() {
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.thread.joinable()) return;
    s.stopping = true;
  }
  s.wake.notify_all();
  s.thread.join();
  if (s.writer.joinable()) s.writer.join();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.dir.clear();
}

}  // namespace triage::watchdog
