// The collective watchdog: MPI collectives have no timeout, so a rank that stalls or dies
// without its process ending would leave the others waiting forever. Every rank keeps a
// label of what it is doing (a stack of scopes: "step 5, micro-batch 1/2, MoE layer 1,
// combine rows") and marks the collective it is in. A thread checks twice a second, from
// memory only, whether one collective has waited longer than train.collective_timeout_s,
// and then ends the job naming this rank, the collective, the wait, and the other ranks'
// last labels. A second thread writes the label to <run>/ranks/rank-NNNNN.txt rarely (an
// eighth of the timeout, 0.25-10 s) with a beat count, so a hung filesystem delays only
// the file, and a reader tells live ranks from dead ones without comparing clocks across
// hosts. Peers' files are read only at a timeout, within a time bound: of the ranks waiting,
// the lowest-numbered of the first few reports; the others stay quiet while mpirun ends
// the job.
#pragma once

#include <chrono>
#include <string>

#include "common/exit_codes.h"

namespace triage::watchdog {

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
// Nested marks (a broadcast inside communicator creation) restore the outer one, whose
// wait keeps counting from its own start.
class InCollective {
 public:
  explicit InCollective(const char* operation);
  ~InCollective();
  InCollective(const InCollective&) = delete;
  InCollective& operator=(const InCollective&) = delete;

 private:
  const char* outer_;
  std::chrono::steady_clock::time_point outer_since_;
};

// The labels joined by ", ", innermost last.
std::string current_label();

// Starts the watching thread for this rank, as soon after MPI_Init as the timeout is known
// (start-up is watched too). Again: sets the timeout (once the config is read).
void start(double timeout_s, int rank, int world_size);
// From now on this rank's status file is kept in `status_dir` (peers read it to say what
// each rank was doing; without it the message names only this rank's own activity).
void keep_status_files(const std::string& status_dir);
// Ends both threads (the end of a run); start() may follow.
void stop();

}  // namespace triage::watchdog
