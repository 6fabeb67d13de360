// What every Communicator backend must do with rows, written once and run by the MPI
// backend on CPU tensors (every test layout, so several peers, gaps and empty peers) and by
// the NCCL backend on a GPU (a world of one there: NCCL refuses two ranks on one GPU).
// Each row carries its origin in its values, so a backend that returns its input, drops
// the offsets or mixes up peers is caught even on a world of one.
#pragma once

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <vector>

#include "parallel/communicator.h"

namespace triage::testing_support {

// Rows rank `from` sends rank `to` (at most 3): 0 for some pairs (empty peers) on worlds
// of 2 or more.
inline int64_t rows_between(int from, int to) { return (from + 2 * to + 2) % 4; }

// Element (i, column) of what `from` sends `to`: 64 * from + 16 * to + 4 * i + column,
// distinct for worlds of up to 4 ranks and widths up to 4, and below 256, so exact in
// bfloat16 (8 significant bits) as well.
inline at::Tensor tagged_rows(int from, int to, int64_t width, at::ScalarType dtype) {
  EXPECT_TRUE(from < 4 && to < 4 && width <= 4) << "tags would collide";
  const at::Tensor row = 4.0 * at::arange(rows_between(from, to), at::kDouble).unsqueeze(1);
  return (row + at::arange(width, at::kDouble).unsqueeze(0) + 64.0 * from + 16.0 * to).to(dtype);
}

// The blocking exchange with counts: what arrives from each peer, in rank order, is what
// that peer meant for this rank, in a new tensor (not the input, even on a world of one).
inline void expect_rows_reach_their_ranks(Communicator& comm, at::Device device,
                                          at::ScalarType dtype) {
  const int me = comm.rank(), ranks = comm.size();
  constexpr int64_t kWidth = 3;
  std::vector<at::Tensor> outgoing, expected;
  std::vector<int64_t> send_rows, recv_rows;
  for (int peer = 0; peer < ranks; ++peer) {
    outgoing.push_back(tagged_rows(me, peer, kWidth, dtype));
    expected.push_back(tagged_rows(peer, me, kWidth, dtype));
    send_rows.push_back(rows_between(me, peer));
    recv_rows.push_back(rows_between(peer, me));
  }
  const at::Tensor send = at::cat(outgoing).to(device);
  const at::Tensor got = comm.alltoallv_rows(send, send_rows, recv_rows);
  EXPECT_TRUE(at::equal(got.cpu(), at::cat(expected))) << "rank " << me;
  if (got.numel() > 0) EXPECT_NE(got.data_ptr(), send.data_ptr()) << "returned its input";
}

// The pipeline's non-blocking exchange: rows from peer p land exactly at recv span p, rows
// go out from exactly send span p, and the gaps between spans are left as they were.
inline void expect_started_rows_land_at_their_spans(Communicator& comm, at::Device device,
                                                    at::ScalarType dtype) {
  const int me = comm.rank(), ranks = comm.size();
  constexpr int64_t kWidth = 2, kGap = 1;
  // Send buffer: for each peer, a gap row then its rows; receive buffer likewise, but with
  // two gap rows, so that a backend that ignores either offset puts rows in the wrong place.
  std::vector<at::Tensor> send_parts, want_parts;
  std::vector<RowSpan> send_spans, recv_spans;
  int64_t send_at = 0, recv_at = 0;
  const at::Tensor gap = at::full({kGap, kWidth}, -1.0, at::kDouble).to(dtype);
  for (int peer = 0; peer < ranks; ++peer) {
    send_parts.push_back(gap);
    send_parts.push_back(tagged_rows(me, peer, kWidth, dtype));
    send_spans.push_back({send_at + kGap, rows_between(me, peer)});
    send_at += kGap + rows_between(me, peer);
    want_parts.push_back(at::cat({gap, gap}));
    want_parts.push_back(tagged_rows(peer, me, kWidth, dtype));
    recv_spans.push_back({recv_at + 2 * kGap, rows_between(peer, me)});
    recv_at += 2 * kGap + rows_between(peer, me);
  }
  const at::Tensor send = at::cat(send_parts).to(device);
  at::Tensor recv = at::full({recv_at, kWidth}, -1.0, at::kDouble).to(dtype).to(device);
  comm.start_alltoallv_rows(send, send_spans, recv, recv_spans)->wait();
  EXPECT_TRUE(at::equal(recv.cpu(), at::cat(want_parts))) << "rank " << me;
}

// The sum over ranks of rank r's tensor (r + 1) * base: base * ranks * (ranks + 1) / 2.
inline void expect_allreduce_sums_over_ranks(Communicator& comm, at::Device device,
                                             at::ScalarType dtype) {
  const int ranks = comm.size();
  const at::Tensor base = at::arange(1, 6, at::kDouble);
  at::Tensor mine = ((comm.rank() + 1) * base).to(dtype).to(device);
  comm.allreduce_sum_(mine);
  EXPECT_TRUE(at::equal(mine.cpu(), (base * (ranks * (ranks + 1) / 2)).to(dtype)));
}

}  // namespace triage::testing_support
