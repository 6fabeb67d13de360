// Communicator over MPI for CPU tensors. Rows travel as one derived datatype per row so
// that counts stay small integers however wide a row is.
#include <exception>
#include <limits>

#include "common/error.h"
#include "common/mpi_check.h"
#include "dist/mpi_communicator.h"
#include "dist/watchdog.h"

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
  TRIAGE_ASSERT(!tensor.is_cuda(), "the MPI communicator got a CUDA tensor; GPU runs use NCCL (train.device: cuda)");
}

int to_int(int64_t value) {
  TRIAGE_ASSERT(value >= 0 && value <= std::numeric_limits<int>::max(),
                "count " << value << " does not fit MPI's int");
  return static_cast<int>(value);
}

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

    int64_t row_width = 1;
    for (int64_t d = 1; d < send.dim(); ++d) row_width *= send.size(d);
    MPI_Datatype row_type;
    TRIAGE_MPI_CHECK(
        MPI_Type_contiguous(to_int(row_width), mpi_type(send.scalar_type()), &row_type));
    TRIAGE_MPI_CHECK(MPI_Type_commit(&row_type));

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
