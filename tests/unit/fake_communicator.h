// A communicator of one rank for unit tests: every collective returns its input. Tests
// derive from it to count or to imitate a larger world.
#pragma once

#include <memory>
#include <vector>

#include "parallel/communicator.h"

namespace triage::testing_support {

struct OneRankCommunicator : Communicator {
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::vector<int64_t> alltoall(const std::vector<int64_t>& send) override { return send; }
  at::Tensor alltoallv_rows(const at::Tensor& rows, const std::vector<int64_t>&,
                            const std::vector<int64_t>&) override {
    return rows;
  }
  std::unique_ptr<PendingRows> start_alltoallv_rows(const at::Tensor&, const std::vector<RowSpan>&,
                                                    const at::Tensor&,
                                                    const std::vector<RowSpan>&) override {
    return nullptr;
  }
  void allreduce_sum_(at::Tensor&) override {}
  void broadcast_(at::Tensor&, int) override {}
  void barrier() override {}
  std::vector<int> host_of_ranks() override { return {0}; }
  std::unique_ptr<Communicator> split(int, int) override {
    return std::make_unique<OneRankCommunicator>();
  }
};

}  // namespace triage::testing_support
