// Async-signal-safe: the handler only stores the signal number.
#include "train/preemption.h"

#include <csignal>

namespace triage::preemption {
namespace {
volatile std::sig_atomic_t g_signal = 0;
void on_signal(int signal) { g_signal = signal; }
}  // namespace

void install_handlers() {
  struct sigaction action = {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // system calls (file writes, MPI progress) continue
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
}

int requested() { return g_signal; }

}  // namespace triage::preemption
