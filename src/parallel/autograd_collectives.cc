// Custom autograd functions around Communicator calls; see the header.
#include "parallel/autograd_collectives.h"

#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <memory>

#include "common/error.h"
#include "parallel/phase_clock.h"
#include "parallel/watchdog.h"

namespace triage {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// saved_data holds only IValues, so the communicator travels as its address.
Communicator* communicator_at(AutogradContext* ctx) {
  return reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
}

struct AllToAllRows : public torch::autograd::Function<AllToAllRows> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& rows, int64_t comm_address,
                            std::vector<int64_t> send_rows, std::vector<int64_t> recv_rows,
                            std::string phase, std::string after_backward,
                            const InFlightWork* while_in_flight, bool grad_enabled) {
    ctx->saved_data["comm"] = comm_address;
    ctx->saved_data["phase"] = phase;
    ctx->saved_data["after_backward"] = after_backward;
    ctx->saved_data["send"] = send_rows;
    ctx->saved_data["recv"] = recv_rows;
    // Backward runs later, outside the forward's scopes: it carries the forward's label.
    ctx->saved_data["label"] = watchdog::current_label();
    if (!phase.empty()) {
      phase_clock::enter(phase);
      phase_clock::wait_for_peers(*communicator_at(ctx));
    }
    if (!*while_in_flight) return communicator_at(ctx)->alltoallv_rows(rows, send_rows, recv_rows);
    return start_then_wait(*communicator_at(ctx), rows.contiguous(), send_rows, recv_rows,
                           *while_in_flight, grad_enabled);
  }

  // The same exchange as alltoallv_rows, started without blocking so that the work runs
  // while the rows travel (on a GPU: the communication stream waits for the rows only).
  static at::Tensor start_then_wait(Communicator& comm, const at::Tensor& rows,
                                    const std::vector<int64_t>& send_rows,
                                    const std::vector<int64_t>& recv_rows, const InFlightWork& work,
                                    bool grad_enabled) {
    auto spans = [](const std::vector<int64_t>& counts, int64_t& total) {
      std::vector<RowSpan> out;
      for (int64_t n : counts) {
        out.push_back({total, n});
        total += n;
      }
      return out;
    };
    int64_t sent = 0, received = 0;
    const std::vector<RowSpan> send_spans = spans(send_rows, sent);
    const std::vector<RowSpan> recv_spans = spans(recv_rows, received);
    TRIAGE_ASSERT(sent == rows.size(0), "send counts sum to " << sent << ", rows " << rows.size(0));
    std::vector<int64_t> shape = rows.sizes().vec();
    shape[0] = received;
    at::Tensor recv = at::empty(shape, rows.options());
    std::unique_ptr<PendingRows> pending =
        comm.start_alltoallv_rows(rows, send_spans, recv, recv_spans);
    run_in_flight_work(work, grad_enabled);
    pending->wait();
    return recv;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto send = ctx->saved_data["send"].toIntVector();
    auto recv = ctx->saved_data["recv"].toIntVector();
    watchdog::Scope scope(backward_label(ctx->saved_data["label"].toStringRef()));
    const std::string& phase = ctx->saved_data["phase"].toStringRef();
    if (!phase.empty()) {
      phase_clock::enter(phase + " bwd");
      phase_clock::wait_for_peers(*communicator_at(ctx), /*backward=*/true);
    }
    at::Tensor grad_rows = communicator_at(ctx)->alltoallv_rows(grads[0], recv, send);
    if (!phase.empty()) phase_clock::enter(ctx->saved_data["after_backward"].toStringRef());
    return {grad_rows,    at::Tensor(), at::Tensor(), at::Tensor(),
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
                                   const InFlightWork& while_in_flight) {
  return AllToAllRows::apply(rows, reinterpret_cast<int64_t>(&comm), send_rows, recv_rows,
                             phases.rows, phases.after_backward, &while_in_flight,
                             c10::GradMode::is_enabled());
}

void run_in_flight_work(const InFlightWork& work, bool grad_enabled) {
  if (!work) return;
  // A custom function's forward runs with recording off; the work's own graph (the shared
  // experts' gradients) needs the caller's setting.
  c10::AutoGradMode mode(grad_enabled);
  // Timed apart from the exchange it overlaps (benchmarks' phase breakdown).
  const std::string during = phase_clock::current();
  phase_clock::enter("work beside the exchange");
  work();
  if (!during.empty()) phase_clock::enter(during);
}

at::Tensor allreduce_sum_autograd(const at::Tensor& tensor, Communicator& comm, bool used_alike) {
  return AllReduceSum::apply(tensor, reinterpret_cast<int64_t>(&comm), used_alike);
}

}  // namespace triage
