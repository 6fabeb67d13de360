// The collective watchdog: MPI collectives have no timeout, so a rank that stalls or dies
// without its process ending would leave the others waiting forever. Every rank keeps a
// label of what it is doing (a stack of scopes: "step 5, micro-batch 1/2, MoE layer 1,
// combine rows") and marks the collective it is in; a thread checks twice a second, writes
// the label to <run>/ranks/rank-NNNNN.txt, and ends the job when one collective has waited
// longer than train.collective_timeout_s, naming this rank, the collective, the wait, and
// the other ranks' last labels from their files. Of the ranks waiting, the lowest-numbered
// one reports; the others stay quiet for a few seconds while mpirun ends the job.
#pragma once

#include <string>

namespace triage::watchdog {

// Exit code of a rank that gave up on a collective.
constexpr int kExitCollectiveTimeout = 4;

// Pushes `label` onto this process's activity for the scope's lifetime (main thread).
class Scope {
 public:
  explicit Scope(std::string label);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
};

// Marks a collective in flight for its lifetime; Communicator implementations wrap every
// collective call in one. `operation` names it ("all-to-all rows").
class InCollective {
 public:
  explicit InCollective(const char* operation);
  ~InCollective();
  InCollective(const InCollective&) = delete;
  InCollective& operator=(const InCollective&) = delete;
};

// The labels joined by ", ", innermost last.
std::string current_label();

// Starts the watching thread for this rank. status_dir "" keeps no files (then the message
// cannot say what the other ranks were doing). Idempotent per process; stop() ends it.
void start(double timeout_s, const std::string& status_dir, int rank, int world_size);
void stop();

}  // namespace triage::watchdog
