// Activity labels and the watching thread; see the header. The thread never calls MPI
// (MPI is initialised FUNNELED): it ends this process with _exit, and mpirun, seeing a rank
// die, ends every other rank of the job.
#include "parallel/watchdog.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
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
  // The watching thread.
  std::thread thread;
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

// "<unix seconds> <what>": written to a temporary file and renamed, so readers never see
// half a line.
void write_status(const std::string& dir, int rank, const std::string& what) {
  const std::string path = status_path(dir, rank);
  {
    std::ofstream out(path + ".tmp");
    out << std::time(nullptr) << " " << what << "\n";
  }
  std::error_code ignored;
  std::filesystem::rename(path + ".tmp", path, ignored);
}

// Another rank's last status, from its file.
struct PeerStatus {
  bool known = false;  // the file exists and parses
  std::time_t age_s = 0;
  std::string what;
  // Waiting in a collective, with a status fresher than two periods: alive and stuck too.
  bool waiting_and_alive() const { return known && what.rfind("in ", 0) == 0 && age_s <= 2; }
};

PeerStatus read_status(const std::string& dir, int rank) {
  PeerStatus status;
  std::ifstream in(status_path(dir, rank));
  std::time_t when = 0;
  if (in >> when && std::getline(in >> std::ws, status.what)) {
    status.known = true;
    status.age_s = std::time(nullptr) - when;
  }
  return status;
}

std::string others_text(const std::string& dir, int rank, int world_size) {
  if (dir.empty()) return "";
  std::ostringstream out, suspects;
  for (int r = 0; r < world_size; ++r) {
    if (r == rank) continue;
    const PeerStatus peer = read_status(dir, r);
    if (peer.known)
      out << "; rank " << r << " (" << peer.age_s << " s ago): " << peer.what;
    else
      out << "; rank " << r << ": no status file";
    // Not waiting in a collective, or silent for longer than a status period: suspect.
    if (!peer.waiting_and_alive()) suspects << (suspects.tellp() > 0 ? ", " : "") << r;
  }
  const std::string named = suspects.str();
  return (named.empty() ? "" : "; look at rank(s) " + named) + out.str();
}

// Whether a lower rank is also waiting in a collective and alive: then that rank reports,
// and this one stays quiet for a grace period, so a timeout is explained once rather than
// once per waiting rank.
bool lower_rank_will_report(const std::string& dir, int rank) {
  for (int r = 0; r < rank; ++r)
    if (read_status(dir, r).waiting_and_alive()) return true;
  return false;
}

void watch(double timeout_s, std::string dir, int rank, int world_size) {
  State& s = state();
  std::unique_lock<std::mutex> lock(s.mutex);
  while (!s.stopping) {
    s.wake.wait_for(lock, std::chrono::milliseconds(500));
    if (s.stopping) break;
    const std::string label = joined(s.labels);
    const char* collective = s.collective;
    const double waited =
        collective ? std::chrono::duration<double>(Clock::now() - s.collective_since).count() : 0.0;
    lock.unlock();
    const std::string what = collective ? "in " + std::string(collective) + " for " +
                                              std::to_string(int(waited)) + " s: " + label
                                        : "working: " + label;
    if (!dir.empty()) write_status(dir, rank, what);
    constexpr double kGrace = 5.0;  // for a lower rank to report and mpirun to end the job
    // Other ranks' files are read only once this rank has timed out.
    const bool timed_out = collective && waited > timeout_s;
    const bool defer = timed_out && !dir.empty() && waited <= timeout_s + kGrace &&
                       lower_rank_will_report(dir, rank);
    if (timed_out && !defer) {
      std::ostringstream message;
      message << "[rank " << rank << "] error: collective timeout: " << collective << " at '"
              << label << "' not done after " << int(waited)
              << " s (train.collective_timeout_s = " << timeout_s << "); a rank stopped taking part"
              << others_text(dir, rank, world_size) << "\n";
      std::cerr << message.str() << std::flush;
      _exit(kExitCollectiveTimeout);
    }
    lock.lock();
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
  state().collective = operation;
  state().collective_since = Clock::now();
}

InCollective::~InCollective() {
  std::lock_guard<std::mutex> lock(state().mutex);
  state().collective = nullptr;
}

std::string current_label() {
  std::lock_guard<std::mutex> lock(state().mutex);
  return joined(state().labels);
}

void start(double timeout_s, const std::string& status_dir, int rank, int world_size) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.thread.joinable()) return;
  if (!status_dir.empty()) std::filesystem::create_directories(status_dir);
  s.stopping = false;
  s.thread = std::thread(watch, timeout_s, status_dir, rank, world_size);
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
}

}  // namespace triage::watchdog
