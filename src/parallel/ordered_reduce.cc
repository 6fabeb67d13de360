// Reduce-scatter and all-gather from the row exchange; see the header for why.
#include "parallel/ordered_reduce.h"

#include <vector>

#include "common/error.h"

namespace triage {

PendingReduceScatter::PendingReduceScatter(Communicator& comm, const at::Tensor& flat,
                                           at::ScalarType wire)
    : sum_dtype_(flat.scalar_type()), ranks_(comm.size()) {
  TRIAGE_ASSERT(flat.dim() == 1 && flat.is_contiguous() && flat.numel() % ranks_ == 0,
                "reduce-scatter needs a contiguous 1-D tensor of a multiple of "
                    << ranks_ << " elements; got " << flat.numel());
  chunk_ = flat.numel() / ranks_;
  send_ = flat.scalar_type() == wire ? flat : flat.to(wire);
  recv_ = at::empty_like(send_);
  std::vector<RowSpan> send_spans, recv_spans;
  for (int64_t p = 0; p < ranks_; ++p) {
    send_spans.push_back({p * chunk_, chunk_});  // my piece of rank p's chunk
    recv_spans.push_back({p * chunk_, chunk_});  // rank p's piece of my chunk
  }
  pending_ = comm.start_alltoallv_rows(send_, send_spans, recv_, recv_spans);
}

bool PendingReduceScatter::progress() { return pending_->progress(); }

at::Tensor PendingReduceScatter::finish() {
  pending_->wait();
  // Rank 0's piece first, then each next rank's: the one order every caller shares.
  at::Tensor sum = recv_.narrow(0, 0, chunk_)
                       .to(sum_dtype_, /*non_blocking=*/false,
                           /*copy=*/true);
  for (int64_t p = 1; p < ranks_; ++p) {
    const at::Tensor piece = recv_.narrow(0, p * chunk_, chunk_);
    if (piece.scalar_type() == sum_dtype_)
      sum.add_(piece);
    else
      sum.add_(piece.to(sum_dtype_));
  }
  recv_ = at::Tensor();
  send_ = at::Tensor();
  return sum;
}

PendingAllGather::PendingAllGather(Communicator& comm, const at::Tensor& chunk,
                                   const at::Tensor& out) {
  const int64_t ranks = comm.size(), length = chunk.numel();
  TRIAGE_ASSERT(
      chunk.dim() == 1 && out.dim() == 1 && chunk.is_contiguous() && out.is_contiguous() &&
          out.numel() == ranks * length && chunk.scalar_type() == out.scalar_type(),
      "all-gather of " << length << " elements from " << ranks << " ranks into " << out.numel());
  std::vector<RowSpan> send_spans(size_t(ranks), RowSpan{0, length}), recv_spans;
  for (int64_t p = 0; p < ranks; ++p) recv_spans.push_back({p * length, length});
  pending_ = comm.start_alltoallv_rows(chunk, send_spans, out, recv_spans);
}

bool PendingAllGather::progress() { return pending_->progress(); }

void PendingAllGather::wait() { pending_->wait(); }

}  // namespace triage
