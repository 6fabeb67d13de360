// Communicator over NCCL for CUDA tensors; CPU tensors fall through to MPI. See the header.
#include "parallel/nccl_communicator.h"

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "common/check.h"
#include "common/error.h"
#include "common/exit_codes.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_environment.h"
#include "parallel/watchdog.h"

namespace triage {
namespace {

ncclDataType_t nccl_type(at::ScalarType type) {
  switch (type) {
    case at::kDouble:
      return ncclFloat64;
    case at::kFloat:
      return ncclFloat32;
    case at::kBFloat16:
      return ncclBfloat16;
    case at::kHalf:
      return ncclFloat16;
    case at::kLong:
      return ncclInt64;
    case at::kInt:
      return ncclInt32;
    case at::kByte:
    case at::kBool:
      return ncclUint8;
    default:
      TRIAGE_ASSERT(false, "no NCCL type for " << type);
  }
}

class NcclPendingRows : public PendingRows {
 public:
  explicit NcclPendingRows(cudaEvent_t finished) : finished_(finished) {}
  ~NcclPendingRows() override {
    if (!waited_ && std::uncaught_exceptions() == 0) wait();
    cudaEventDestroy(finished_);
  }
  NcclPendingRows(const NcclPendingRows&) = delete;
  NcclPendingRows& operator=(const NcclPendingRows&) = delete;

  bool progress() override { return cudaEventQuery(finished_) == cudaSuccess; }
  void wait() override {
    TRIAGE_CUDA_CHECK(
        cudaStreamWaitEvent(c10::cuda::getCurrentCUDAStream().stream(), finished_, 0));
    waited_ = true;
  }

 private:
  cudaEvent_t finished_;
  bool waited_ = false;
};

class NcclCommunicator : public Communicator {
 public:
  // host: an MPI communicator over the same ranks (bootstrap, counts, CPU tensors).
  NcclCommunicator(std::unique_ptr<Communicator> host, double timeout_s)
      : host_(std::move(host)),
        stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/true)),
        timeout_s_(timeout_s) {
    // Watched like a collective: a bootstrap that never completes ends the job.
    watchdog::InCollective in_flight("NCCL communicator creation");
    ncclUniqueId id;
    if (host_->rank() == 0) TRIAGE_NCCL_CHECK(ncclGetUniqueId(&id));
    at::Tensor id_bytes = at::empty({int64_t(sizeof id)}, at::kByte);
    std::memcpy(id_bytes.data_ptr(), &id, sizeof id);
    host_->broadcast_(id_bytes, 0);
    std::memcpy(&id, id_bytes.data_ptr(), sizeof id);
    TRIAGE_NCCL_CHECK(ncclCommInitRank(&comm_, host_->size(), id, host_->rank()));
    device_ = c10::cuda::current_device();
    watchdog_ = std::thread([this] { watch(); });
  }

  ~NcclCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    watchdog_.join();
    if (std::uncaught_exceptions() == 0) ncclCommDestroy(comm_);
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }

  // Counts are host data: MPI moves them (the caller already paid the one device-to-host
  // sync that produced them, in sort_by_expert).
  std::vector<int64_t> alltoall(const std::vector<int64_t>& send) override {
    return host_->alltoall(send);
  }

  at::Tensor alltoallv_rows(const at::Tensor& rows, const std::vector<int64_t>& send_rows,
                            const std::vector<int64_t>& recv_rows) override {
    if (!rows.is_cuda()) return host_->alltoallv_rows(rows, send_rows, recv_rows);
    at::Tensor in = rows.contiguous();
    int64_t received = 0;
    for (int64_t n : recv_rows) received += n;
    std::vector<int64_t> shape = in.sizes().vec();
    shape[0] = received;
    at::Tensor out = at::empty(shape, in.options());
    // The row width from the shape, not numel / rows: a rank that sends no rows still
    // receives full-width rows (numel / rows would be 0 for an empty tensor).
    int64_t row_elements = 1, sent = 0;
    for (int64_t d = 1; d < in.dim(); ++d) row_elements *= in.size(d);
    for (int64_t n : send_rows) sent += n;
    TRIAGE_ASSERT(
        sent == in.size(0) && int(send_rows.size()) == size() && int(recv_rows.size()) == size(),
        "send counts sum to " << sent << " for " << in.size(0) << " rows");
    const size_t row_bytes = size_t(row_elements) * in.element_size();
    const ncclDataType_t type = nccl_type(in.scalar_type());
    run("alltoallv", {in, out}, [&](cudaStream_t stream) {
      TRIAGE_NCCL_CHECK(ncclGroupStart());
      int64_t send_offset = 0, recv_offset = 0;
      for (int peer = 0; peer < size(); ++peer) {
        if (send_rows[peer] > 0)
          TRIAGE_NCCL_CHECK(
              ncclSend(static_cast<const char*>(in.data_ptr()) + send_offset * row_bytes,
                       size_t(send_rows[peer] * row_elements), type, peer, comm_, stream));
        if (recv_rows[peer] > 0)
          TRIAGE_NCCL_CHECK(ncclRecv(static_cast<char*>(out.data_ptr()) + recv_offset * row_bytes,
                                     size_t(recv_rows[peer] * row_elements), type, peer, comm_,
                                     stream));
        send_offset += send_rows[peer];
        recv_offset += recv_rows[peer];
      }
      TRIAGE_NCCL_CHECK(ncclGroupEnd());
    });
    return out;
  }

  // The exchange runs on the communication stream while the caller's stream computes;
  // wait() orders the caller's stream after it (the host does not block).
  std::unique_ptr<PendingRows> start_alltoallv_rows(
      const at::Tensor& send, const std::vector<RowSpan>& send_spans, const at::Tensor& recv,
      const std::vector<RowSpan>& recv_spans) override {
    if (!send.is_cuda()) return host_->start_alltoallv_rows(send, send_spans, recv, recv_spans);
    TRIAGE_ASSERT(send.is_contiguous() && recv.is_contiguous() &&
                      int(send_spans.size()) == size() && int(recv_spans.size()) == size(),
                  "row exchange needs contiguous tensors and one span per rank");
    int64_t row_elements = 1;
    for (int64_t d = 1; d < send.dim(); ++d) row_elements *= send.size(d);
    const size_t row_bytes = size_t(row_elements) * send.element_size();
    const ncclDataType_t type = nccl_type(send.scalar_type());
    cudaEvent_t finished = enqueue("alltoallv", {send, recv}, [&](cudaStream_t stream) {
      TRIAGE_NCCL_CHECK(ncclGroupStart());
      for (int peer = 0; peer < size(); ++peer) {
        const RowSpan& out = send_spans[peer];
        const RowSpan& in = recv_spans[peer];
        if (out.rows > 0)
          TRIAGE_NCCL_CHECK(
              ncclSend(static_cast<const char*>(send.data_ptr()) + out.offset * row_bytes,
                       size_t(out.rows * row_elements), type, peer, comm_, stream));
        if (in.rows > 0)
          TRIAGE_NCCL_CHECK(ncclRecv(static_cast<char*>(recv.data_ptr()) + in.offset * row_bytes,
                                     size_t(in.rows * row_elements), type, peer, comm_, stream));
      }
      TRIAGE_NCCL_CHECK(ncclGroupEnd());
    });
    return std::make_unique<NcclPendingRows>(finished);
  }

  void allreduce_sum_(at::Tensor& tensor) override {
    if (!tensor.is_cuda()) return host_->allreduce_sum_(tensor);
    TRIAGE_ASSERT(tensor.is_contiguous(), "all-reduce of a non-contiguous tensor");
    run("allreduce", {tensor}, [&](cudaStream_t stream) {
      TRIAGE_NCCL_CHECK(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), size_t(tensor.numel()),
                                      nccl_type(tensor.scalar_type()), ncclSum, comm_, stream));
    });
  }

  void broadcast_(at::Tensor& tensor, int root) override {
    if (!tensor.is_cuda()) return host_->broadcast_(tensor, root);
    TRIAGE_ASSERT(tensor.is_contiguous(), "broadcast of a non-contiguous tensor");
    run("broadcast", {tensor}, [&](cudaStream_t stream) {
      TRIAGE_NCCL_CHECK(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), size_t(tensor.numel()),
                                      nccl_type(tensor.scalar_type()), root, comm_, stream));
    });
  }

  void barrier() override {
    TRIAGE_CUDA_CHECK(cudaStreamSynchronize(stream_.stream()));
    host_->barrier();
  }

  std::vector<int> host_of_ranks() override { return host_->host_of_ranks(); }

  // A new NCCL communicator over the part, bootstrapped over the part's MPI communicator.
  std::unique_ptr<Communicator> split(int color, int key) override {
    return std::make_unique<NcclCommunicator>(host_->split(color, key), timeout_s_);
  }

 private:
  // Orders `launch` on the communication stream after the caller's stream's work, then
  // the caller's stream after it; the tensors are marked as used on the communication
  // stream so the caching allocator does not reuse their memory too early.
  template <class Launch>
  void run(const char* what, std::initializer_list<at::Tensor> tensors, Launch&& launch) {
    cudaEvent_t finished = enqueue(what, tensors, std::forward<Launch>(launch));
    TRIAGE_CUDA_CHECK(cudaStreamWaitEvent(c10::cuda::getCurrentCUDAStream().stream(), finished, 0));
    TRIAGE_CUDA_CHECK(cudaEventDestroy(finished));
  }

  // `launch` on the communication stream after the caller's stream's work; returns an
  // event (the caller's to destroy) recorded after it. The watchdog tracks it meanwhile.
  template <class Launch>
  cudaEvent_t enqueue(const char* what, std::initializer_list<at::Tensor> tensors,
                      Launch&& launch) {
    c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream();
    cudaEvent_t ready, done, finished;
    TRIAGE_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    TRIAGE_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    TRIAGE_CUDA_CHECK(cudaEventCreateWithFlags(&finished, cudaEventDisableTiming));
    TRIAGE_CUDA_CHECK(cudaEventRecord(ready, caller.stream()));
    TRIAGE_CUDA_CHECK(cudaStreamWaitEvent(stream_.stream(), ready, 0));
    for (const at::Tensor& t : tensors)  // an empty tensor (a rank with no rows) owns no block
      if (t.numel() > 0)
        c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), stream_);
    launch(stream_.stream());
    TRIAGE_CUDA_CHECK(cudaEventRecord(done, stream_.stream()));
    TRIAGE_CUDA_CHECK(cudaEventRecord(finished, stream_.stream()));
    TRIAGE_CUDA_CHECK(cudaEventDestroy(ready));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pending_.push_back({what, done, std::chrono::steady_clock::now()});
    }
    wake_.notify_all();
    return finished;
  }

  // The watchdog: retires finished collectives, and aborts the job on an asynchronous
  // NCCL error or a collective older than the timeout.
  void watch() {
    // This rank's GPU: a thread starts on device 0, and its first CUDA call there would
    // create a context on another rank's GPU.
    TRIAGE_CUDA_CHECK(cudaSetDevice(device_));
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      wake_.wait_for(lock, std::chrono::milliseconds(100));
      while (!pending_.empty()) {
        Pending& front = pending_.front();
        const cudaError_t state = cudaEventQuery(front.done);
        if (state == cudaSuccess) {
          cudaEventDestroy(front.done);
          pending_.pop_front();
          continue;
        }
        ncclResult_t async = ncclSuccess;
        ncclCommGetAsyncError(comm_, &async);
        const double age =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - front.started).count();
        // Anything but "not ready" is a sticky CUDA error (a faulting kernel): it will never
        // finish, so it is reported now with its text, not as a timeout later.
        const bool cuda_failed = state != cudaErrorNotReady;
        if (cuda_failed || async != ncclSuccess || age > timeout_s_) {
          const std::string reason =
              cuda_failed ? std::string("CUDA error: ") + cudaGetErrorString(state)
              : async != ncclSuccess
                  ? std::string("asynchronous NCCL error: ") + ncclGetErrorString(async)
                  : "did not finish in " + std::to_string(int(timeout_s_)) +
                        " s (train.collective_timeout_s); a peer rank is stuck or gone";
          ncclCommAbort(comm_);
          const bool timed_out = !cuda_failed && async == ncclSuccess;
          abort_job(std::string("error: NCCL ") + front.what + " " + reason,
                    timed_out ? exit_code::kCollectiveTimeout : exit_code::kDeviceError);
        }
        break;  // the oldest is still running; check again later
      }
    }
  }

  struct Pending {
    const char* what;
    cudaEvent_t done;
    std::chrono::steady_clock::time_point started;
  };

  std::unique_ptr<Communicator> host_;
  c10::cuda::CUDAStream stream_;
  double timeout_s_;
  int device_ = 0;  // the CUDA device the communicator was made on
  ncclComm_t comm_ = nullptr;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> pending_;
  bool stopping_ = false;
  std::thread watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, double timeout_s) {
  return std::make_unique<NcclCommunicator>(make_mpi_communicator(comm), timeout_s);
}

}  // namespace triage
