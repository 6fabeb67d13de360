// Custom autograd functions around Communicator calls; see the header.
#include "parallel/autograd_collectives.h"

#include <torch/csrc/autograd/custom_function.h>

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
                            std::string phase, std::string after_backward) {
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
    return communicator_at(ctx)->alltoallv_rows(rows, send_rows, recv_rows);
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
    return {grad_rows, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
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
                                   const ExchangePhases& phases) {
  return AllToAllRows::apply(rows, reinterpret_cast<int64_t>(&comm), send_rows, recv_rows,
                             phases.rows, phases.after_backward);
}

at::Tensor allreduce_sum_autograd(const at::Tensor& tensor, Communicator& comm, bool used_alike) {
  return AllReduceSum::apply(tensor, reinterpret_cast<int64_t>(&comm), used_alike);
}

}  // namespace triage
