// Collectives that autograd can differentiate through, for the few places where a
// forward value depends on other ranks' tensors:
//   all-to-all of rows:  backward is the all-to-all of the gradients, counts swapped
//   all-reduce (sum):    backward is the all-reduce (sum) of the gradients
// The communicator must outlive every graph built with it (one training step).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/phases.h"

namespace triage {

// Phases for phase_clock (benchmarks) and the watchdog: the transfer is timed as `rows`
// forward and its backward phase backward, each after a timed wait for peers; when the
// backward transfer is done, `after_backward` opens (the backward of what preceded the
// forward transfer). None: the exchange marks no phase.
struct ExchangePhases {
  std::optional<Phase> rows;
  std::optional<Phase> after_backward;
};

// Work that needs none of an exchange's tensors (the shared experts), to run while the
// exchange is in flight, with autograd recording as at the call. Each exchange that takes
// one runs it exactly once, after the exchange started and before waiting for it.
using InFlightWork = std::function<void()>;

// while_in_flight: empty, or work for the time the rows travel (then the exchange is
// started, the work runs, and only then is the exchange waited for). keep_own: the rows
// for this rank itself stay where they are, out of the exchange: not sent, not received
// (the result lacks them, and their gradient from here is zero).
at::Tensor alltoallv_rows_autograd(const at::Tensor& rows, Communicator& comm,
                                   const std::vector<int64_t>& send_rows,
                                   const std::vector<int64_t>& recv_rows,
                                   const ExchangePhases& phases = {},
                                   const InFlightWork& while_in_flight = {}, bool keep_own = false);

// Runs `work` with autograd recording as `grad_enabled` says: the work a custom autograd
// function's forward (where recording is off) runs on its caller's behalf.
void run_in_flight_work(const InFlightWork& work, bool grad_enabled);

// The watchdog label for a backward: "backward of <what the forward was doing>", less the
// labels the backward shares with it (the step and micro-batch are still on the stack).
std::string backward_label(const std::string& forward_label);

// Returns the sum of `tensor` over all ranks of comm (a new tensor; the input is untouched).
// used_alike: every rank then uses the sum in the same way (the same function of it, with
// the same weight in its loss, as the global balance loss is), so every rank's gradient of
// it is the same and their sum is this rank's times the group size: backward needs no
// all-reduce, one sync point fewer.
at::Tensor allreduce_sum_autograd(const at::Tensor& tensor, Communicator& comm,
                                  bool used_alike = false);

}  // namespace triage
