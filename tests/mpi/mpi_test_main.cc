// main() for tests that run under mpirun: every rank runs every test; the first failed
// assertion on any rank prints "[rank R] file:line: message" and aborts the whole job, so
// a failure can never leave the other ranks waiting in a collective. Only rank 0 prints
// gtest's progress. Usage: TEST_BINARY --ep N (expert-parallel group size).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "mpi_test_support.h"
#include "parallel/mpi_environment.h"

namespace {

class AbortJobOnFailure : public testing::EmptyTestEventListener {
  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (!result.failed()) return;
    triage::abort_job(std::string(result.file_name() ? result.file_name() : "?") + ":" +
                          std::to_string(result.line_number()) + ": " + result.summary(),
                      1);
  }
};

}  // namespace

namespace triage::testing_support {
int64_t g_ep_size = 1;
}

int main(int argc, char** argv) {
  triage::MpiEnvironment mpi(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--ep")
      triage::testing_support::g_ep_size = std::atoll(argv[i + 1]);
  auto& listeners = testing::UnitTest::GetInstance()->listeners();
  if (mpi.world_rank() != 0) delete listeners.Release(listeners.default_result_printer());
  // Alone (the GPU tests), a failure strands no peer: the other tests run and report too.
  if (mpi.world_size() > 1) listeners.Append(new AbortJobOnFailure);
  return RUN_ALL_TESTS();
}
