// Communicator over MPI for CPU tensors. Rows travel as one derived datatype per row so
// that counts stay small integers however wide a row is.
#include <mpi.h>
#include <exception>
#include <limits>

#include "common/check.h"
#include "common/error.h"
#include "parallel/mpi_communicator.h"
#include "parallel/watchdog.h"

namespace triage {
namespace {

MPI_Datatype mpi_type(at::ScalarType type) {
  switch (type) {
    case at::kDouble:
      return MPI_DOUBLE;
    case at::kFloat:
      return MPI_FLOAT;
    case at::kLong:
      return MPI_INT64_T;
    case at::kInt:
      return MPI_INT32_T;
    case at::kBFloat16:
    case at::kHalf:
      return MPI_UINT16_T;  // moved as bits; never reduced
    case at::kBool:
    case at::kByte:
      return MPI_UINT8_T;
    default:
      TRIAGE_ASSERT(false, "no MPI type for " << type);
  }
}

// This MPI is not assumed CUDA-aware: device memory must go through the NCCL backend.
void require_cpu(const at::Tensor& tensor) {
  TRIAGE_ASSERT(!tensor.is_cuda(),
                "the MPI communicator got a CUDA tensor; GPU runs use NCCL (train.device: cuda)");
}

int to_int(int64_t value) {
  TRIAGE_ASSERT(value >= 0 && value <= std::numeric_limits<int>::max(),
                "count " << value << " does not fit MPI's int");
  return static_cast<int>(value);
}

MPI_Datatype committed_row_type(const at::Tensor& rows) {
  int64_t row_width = 1;
  for (int64_t d = 1; d < rows.dim(); ++d) row_width *= rows.size(d);
  MPI_Datatype row_type;
  TRIAGE_MPI_CHECK(MPI_Type_contiguous(to_int(row_width), mpi_type(rows.scalar_type()), &row_type));
  TRIAGE_MPI_CHECK(MPI_Type_commit(&row_type));
  return row_type;
}

// An MPI_Ialltoallv and what it needs until it completes: the counts and offsets arrays
// (MPI may read them until then) and the row datatype.
class MpiPendingRows : public PendingRows {
 public:
  MpiPendingRows(const at::Tensor& send, const std::vector<RowSpan>& send_spans,
                 const at::Tensor& recv, const std::vector<RowSpan>& recv_spans, MPI_Comm comm)
      : send_(send), recv_(recv), row_type_(committed_row_type(send)) {
    for (const RowSpan& span : send_spans) {
      TRIAGE_ASSERT(
          span.offset >= 0 && span.offset + span.rows <= send.size(0),
          "send span [" << span.offset << ", +" << span.rows << ") of " << send.size(0) << " rows");
      send_counts_.push_back(to_int(span.rows));
      send_offsets_.push_back(to_int(span.offset));
    }
    for (const RowSpan& span : recv_spans) {
      TRIAGE_ASSERT(span.offset >= 0 && span.offset + span.rows <= recv.size(0),
                    "receive span [" << span.offset << ", +" << span.rows << ") of " << recv.size(0)
                                     << " rows");
      recv_counts_.push_back(to_int(span.rows));
      recv_offsets_.push_back(to_int(span.offset));
    }
    TRIAGE_MPI_CHECK(MPI_Ialltoallv(send.data_ptr(), send_counts_.data(), send_offsets_.data(),
                                    row_type_, recv.data_ptr(), recv_counts_.data(),
                                    recv_offsets_.data(), row_type_, comm, &request_));
  }
  ~MpiPendingRows() override {
    if (request_ != MPI_REQUEST_NULL && std::uncaught_exceptions() == 0) wait();
    MPI_Type_free(&row_type_);
  }
  MpiPendingRows(const MpiPendingRows&) = delete;
  MpiPendingRows& operator=(const MpiPendingRows&) = delete;

  bool progress() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    TRIAGE_MPI_CHECK(MPI_Test(&request_, &done, MPI_STATUS_IGNORE));
    return done != 0;
  }

  void wait() override {
    if (request_ == MPI_REQUEST_NULL) return;
    watchdog::InCollective in_flight("all-to-all of rows");
    TRIAGE_MPI_CHECK(MPI_Wait(&request_, MPI_STATUS_IGNORE));
  }

 private:
  at::Tensor send_, recv_;  // kept alive while MPI reads and writes them
  MPI_Datatype row_type_;
  std::vector<int> send_counts_, send_offsets_, recv_counts_, recv_offsets_;
  MPI_Request request_ = MPI_REQUEST_NULL;
};

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm) {
    TRIAGE_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
    TRIAGE_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    TRIAGE_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    TRIAGE_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    // Freeing is collective; while unwinding from an error the job is about to abort.
    if (!finalized && std::uncaught_exceptions() == 0) MPI_Comm_free(&comm_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  std::vector<int64_t> alltoall(const std::vector<int64_t>& send) override {
    TRIAGE_ASSERT(send.size() % size_t(size_) == 0, send.size()
                                                        << " values for " << size_ << " ranks");
    std::vector<int64_t> recv(send.size());
    const int per_peer = to_int(int64_t(send.size()) / size_);
    watchdog::InCollective in_flight("all-to-all of counts");
    TRIAGE_MPI_CHECK(MPI_Alltoall(send.data(), per_peer, MPI_INT64_T, recv.data(), per_peer,
                                  MPI_INT64_T, comm_));
    return recv;
  }

  at::Tensor alltoallv_rows(const at::Tensor& rows, const std::vector<int64_t>& send_rows,
                            const std::vector<int64_t>& recv_rows) override {
    TRIAGE_ASSERT(rows.device().is_cpu(), "the MPI communicator moves CPU tensors only");
    TRIAGE_ASSERT(int(send_rows.size()) == size_ && int(recv_rows.size()) == size_,
                  "need one count per rank");
    at::Tensor send = rows.contiguous();
    std::vector<int64_t> shape(send.sizes().begin(), send.sizes().end());
    int64_t total_recv = 0;
    for (int64_t n : recv_rows) total_recv += n;
    shape[0] = total_recv;
    at::Tensor recv = at::empty(shape, send.options());

    MPI_Datatype row_type = committed_row_type(send);

    std::vector<int> send_counts(size_), send_offsets(size_), recv_counts(size_),
        recv_offsets(size_);
    int64_t send_at = 0, recv_at = 0;
    for (int p = 0; p < size_; ++p) {
      send_counts[p] = to_int(send_rows[p]);
      send_offsets[p] = to_int(send_at);
      recv_counts[p] = to_int(recv_rows[p]);
      recv_offsets[p] = to_int(recv_at);
      send_at += send_rows[p];
      recv_at += recv_rows[p];
    }
    TRIAGE_ASSERT(send_at == send.size(0),
                  "send counts sum to " << send_at << ", rows " << send.size(0));
    watchdog::InCollective in_flight("all-to-all of rows");
    TRIAGE_MPI_CHECK(MPI_Alltoallv(send.data_ptr(), send_counts.data(), send_offsets.data(),
                                   row_type, recv.data_ptr(), recv_counts.data(),
                                   recv_offsets.data(), row_type, comm_));
    TRIAGE_MPI_CHECK(MPI_Type_free(&row_type));
    return recv;
  }

  std::unique_ptr<PendingRows> start_alltoallv_rows(
      const at::Tensor& send, const std::vector<RowSpan>& send_spans, const at::Tensor& recv,
      const std::vector<RowSpan>& recv_spans) override {
    require_cpu(send);
    require_cpu(recv);
    TRIAGE_ASSERT(int(send_spans.size()) == size_ && int(recv_spans.size()) == size_,
                  "need one span per rank");
    TRIAGE_ASSERT(
        send.is_contiguous() && recv.is_contiguous() && send.scalar_type() == recv.scalar_type(),
        "row exchange needs contiguous tensors of one dtype");
    return std::make_unique<MpiPendingRows>(send, send_spans, recv, recv_spans, comm_);
  }

  void allreduce_sum_(at::Tensor& tensor) override {
    require_cpu(tensor);
    TRIAGE_ASSERT(tensor.is_contiguous() && tensor.device().is_cpu(),
                  "allreduce needs a contiguous CPU tensor");
    TRIAGE_ASSERT(!at::isReducedFloatingType(tensor.scalar_type()),
                  "MPI cannot sum " << tensor.scalar_type() << "; reduce in float32");
    watchdog::InCollective in_flight("all-reduce");
    TRIAGE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, tensor.data_ptr(), to_int(tensor.numel()),
                                   mpi_type(tensor.scalar_type()), MPI_SUM, comm_));
  }

  void broadcast_(at::Tensor& tensor, int root) override {
    require_cpu(tensor);
    TRIAGE_ASSERT(tensor.is_contiguous() && tensor.device().is_cpu(),
                  "broadcast needs a contiguous CPU tensor");
    watchdog::InCollective in_flight("broadcast");
    TRIAGE_MPI_CHECK(MPI_Bcast(tensor.data_ptr(), to_int(tensor.numel()),
                               mpi_type(tensor.scalar_type()), root, comm_));
  }

  void barrier() override {
    watchdog::InCollective in_flight("barrier");
    TRIAGE_MPI_CHECK(MPI_Barrier(comm_));
  }

  std::vector<int> host_of_ranks() override {
    watchdog::InCollective in_flight("finding the hosts of a group");
    // A host is named by its lowest rank in this group (the first of its shared-memory
    // split, ordered by rank), then numbered in order of those.
    MPI_Comm node = MPI_COMM_NULL;
    TRIAGE_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
    int first = rank_;
    TRIAGE_MPI_CHECK(MPI_Bcast(&first, 1, MPI_INT, 0, node));
    TRIAGE_MPI_CHECK(MPI_Comm_free(&node));
    std::vector<int> first_of(size_t(size_), 0);
    TRIAGE_MPI_CHECK(MPI_Allgather(&first, 1, MPI_INT, first_of.data(), 1, MPI_INT, comm_));
    std::vector<int> host_of_first(size_t(size_), -1), hosts(size_t(size_), 0);
    int next = 0;
    for (int r = 0; r < size_; ++r) {
      int& host = host_of_first[size_t(first_of[size_t(r)])];
      if (host < 0) host = next++;
      hosts[size_t(r)] = host;
    }
    return hosts;
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    watchdog::InCollective in_flight("splitting a group");
    MPI_Comm part = MPI_COMM_NULL;
    TRIAGE_MPI_CHECK(MPI_Comm_split(comm_, color, key, &part));
    auto made = std::make_unique<MpiCommunicator>(part);  // duplicates it
    TRIAGE_MPI_CHECK(MPI_Comm_free(&part));
    return made;
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm) {
  return std::make_unique<MpiCommunicator>(comm);
}

}  // namespace triage
