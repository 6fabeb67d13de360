// Custom autograd functions around Communicator calls; see the header.
#include "parallel/autograd_collectives.h"

#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <memory>
#include <optional>
#include <string>

#include "common/error.h"
#include "parallel/phase_clock.h"
#include "parallel/watchdog.h"

namespace triage {
namespace {

using torch::autograd::AutogradContext;
constexpr int64_t kNoPhase = -1;  // saved_data holds a phase as its number
using torch::autograd::variable_list;

// saved_data holds only IValues, so the communicator travels as its address.
Communicator* communicator_at(AutogradContext* ctx) {
  return reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
}

// Where each rank's rows lie in a buffer of rows in rank order (counts[p] of them for
// rank p); with keep_own, this rank's own slot sends or takes nothing (its rows stay put).
std::vector<RowSpan> spans_of(const std::vector<int64_t>& counts, int me, bool keep_own,
                              int64_t& total) {
  std::vector<RowSpan> spans;
  for (size_t p = 0; p < counts.size(); ++p) {
    spans.push_back({total, keep_own && int(p) == me ? 0 : counts[p]});
    total += counts[p];
  }
  return spans;
}

struct AllToAllRows : public torch::autograd::Function<AllToAllRows> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& rows, int64_t comm_address,
                            std::vector<int64_t> send_rows, std::vector<int64_t> recv_rows,
                            int64_t phase, int64_t after_backward,
                            const InFlightWork* while_in_flight, bool grad_enabled, bool keep_own) {
    Communicator& comm = *reinterpret_cast<Communicator*>(comm_address);
    if (keep_own) recv_rows[size_t(comm.rank())] = 0;  // nothing comes from this rank itself
    ctx->saved_data["comm"] = comm_address;
    ctx->saved_data["phase"] = phase;
    ctx->saved_data["after_backward"] = after_backward;
    ctx->saved_data["send"] = send_rows;
    ctx->saved_data["recv"] = recv_rows;
    ctx->saved_data["keep_own"] = keep_own;
    std::optional<phase_clock::CollectiveScope> collective;
    if (phase != kNoPhase) collective.emplace(Phase(phase), comm);
    // Backward runs later, outside the forward's scopes: it carries the forward's label.
    ctx->saved_data["label"] = watchdog::current_label();
    if (!*while_in_flight && !keep_own) return comm.alltoallv_rows(rows, send_rows, recv_rows);
    // Started without blocking, so that the work runs while the rows travel (on a GPU: the
    // communication stream waits for the rows only).
    int64_t sent = 0, received = 0;
    const std::vector<RowSpan> send_spans = spans_of(send_rows, comm.rank(), keep_own, sent);
    const std::vector<RowSpan> recv_spans = spans_of(recv_rows, comm.rank(), false, received);
    TRIAGE_ASSERT(sent == rows.size(0), "send counts sum to " << sent << ", rows " << rows.size(0));
    std::vector<int64_t> shape = rows.sizes().vec();
    shape[0] = received;
    at::Tensor recv = at::empty(shape, rows.options());
    std::unique_ptr<PendingRows> pending =
        comm.start_alltoallv_rows(rows.contiguous(), send_spans, recv, recv_spans);
    run_in_flight_work(*while_in_flight, grad_enabled);
    pending->wait();
    return recv;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto send = ctx->saved_data["send"].toIntVector();
    auto recv = ctx->saved_data["recv"].toIntVector();
    const bool keep_own = ctx->saved_data["keep_own"].toBool();
    Communicator& comm = *communicator_at(ctx);
    const std::string label = backward_label(ctx->saved_data["label"].toStringRef());
    const int64_t phase = ctx->saved_data["phase"].toInt();
    std::optional<watchdog::Scope> unmarked;
    std::optional<phase_clock::CollectiveScope> collective;
    if (phase == kNoPhase)
      unmarked.emplace(label);
    else
      collective.emplace(backward_of(Phase(phase)), comm, label);
    at::Tensor grad_rows;
    if (!keep_own) {
      grad_rows = comm.alltoallv_rows(grads[0], recv, send);
    } else {  // the rows that stayed put get no gradient from here
      int64_t received = 0, sent = 0;
      const std::vector<RowSpan> recv_spans = spans_of(recv, comm.rank(), false, received);
      const std::vector<RowSpan> send_spans = spans_of(send, comm.rank(), true, sent);
      std::vector<int64_t> shape = grads[0].sizes().vec();
      shape[0] = sent;
      grad_rows = at::zeros(shape, grads[0].options());
      comm.start_alltoallv_rows(grads[0].contiguous(), recv_spans, grad_rows, send_spans)->wait();
    }
    const int64_t after_backward = ctx->saved_data["after_backward"].toInt();
    if (after_backward != kNoPhase) phase_clock::enter(Phase(after_backward));
    return {grad_rows,    at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& tensor, int64_t comm_address,
                            bool used_alike) {
    ctx->saved_data["comm"] = comm_address;
    ctx->saved_data["used_alike"] = used_alike;
    ctx->saved_data["label"] = watchdog::current_label();
    at::Tensor sum = tensor.contiguous().clone();
    communicator_at(ctx)->allreduce_sum_(sum);
    return sum;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    Communicator* comm = communicator_at(ctx);
    if (ctx->saved_data["used_alike"].toBool())  // every rank's gradient is this one
      return {grads[0] * double(comm->size()), at::Tensor(), at::Tensor()};
    watchdog::Scope scope(backward_label(ctx->saved_data["label"].toStringRef()));
    at::Tensor grad = grads[0].contiguous().clone();
    comm->allreduce_sum_(grad);
    return {grad, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::string backward_label(const std::string& forward) {
  const std::string now = watchdog::current_label() + ", ";
  return "backward of " + (forward.rfind(now, 0) == 0 ? forward.substr(now.size()) : forward);
}

at::Tensor alltoallv_rows_autograd(const at::Tensor& rows, Communicator& comm,
                                   const std::vector<int64_t>& send_rows,
                                   const std::vector<int64_t>& recv_rows,
                                   const ExchangePhases& phases,
                                   const InFlightWork& while_in_flight, bool keep_own) {
  auto code = [](std::optional<Phase> phase) { return phase ? int64_t(*phase) : kNoPhase; };
  return AllToAllRows::apply(rows, reinterpret_cast<int64_t>(&comm), send_rows, recv_rows,
                             code(phases.rows), code(phases.after_backward), &while_in_flight,
                             c10::GradMode::is_enabled(), keep_own);
}

void run_in_flight_work(const InFlightWork& work, bool grad_enabled) {
  if (!work) return;
  // A custom function's forward runs with recording off; the work's own graph (the shared
  // experts' gradients) needs the caller's setting.
  c10::AutoGradMode mode(grad_enabled);
  // Timed apart from the exchange it overlaps (benchmarks' phase breakdown).
  const std::optional<Phase> during = phase_clock::current();
  phase_clock::enter(Phase::kWorkBesideExchange);
  work();
  if (during) phase_clock::enter(*during);
}

at::Tensor allreduce_sum_autograd(const at::Tensor& tensor, Communicator& comm, bool used_alike) {
  return AllReduceSum::apply(tensor, reinterpret_cast<int64_t>(&comm), used_alike);
}

}  // namespace triage
