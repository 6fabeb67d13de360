// Timing summaries, rank gathering and the alternating repetition; see the header.
#include "bench/timing.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <iostream>

#include "common/check.h"
#include "parallel/communicator.h"

namespace triage::bench {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double at = q * double(values.size() - 1);
  const size_t below = size_t(at);
  if (below + 1 >= values.size()) return values.back();
  return values[below] + (at - double(below)) * (values[below + 1] - values[below]);
}

double median(const std::vector<double>& values) { return quantile(values, 0.5); }

nlohmann::ordered_json summary(const std::vector<double>& seconds) {
  return {{"median_s", median(seconds)},     {"p10_s", quantile(seconds, 0.1)},
          {"p90_s", quantile(seconds, 0.9)}, {"min_s", quantile(seconds, 0.0)},
          {"max_s", quantile(seconds, 1.0)}, {"seconds", seconds}};
}

std::vector<double> gather_from_ranks(double value) {
  int ranks = 0;
  TRIAGE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &ranks));
  std::vector<double> all(size_t(ranks), 0.0);
  TRIAGE_MPI_CHECK(MPI_Allgather(&value, 1, MPI_DOUBLE, all.data(), 1, MPI_DOUBLE, MPI_COMM_WORLD));
  return all;
}

double slowest_rank(double seconds) {
  TRIAGE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  return seconds;
}

void run_repetition(std::vector<Contender>& contenders, int64_t repetition, bool timed,
                    Communicator* world, const std::function<void()>& prepare) {
  const size_t count = contenders.size();
  for (size_t i = 0; i < count; ++i) {
    Contender& c = contenders[(i + size_t(repetition)) % count];
    if (prepare) prepare();
    if (world) world->barrier();
    const double start = now_seconds();
    c.run();
    const double mine = now_seconds() - start;
    const std::vector<double> seconds = world ? gather_from_ranks(mine) : std::vector{mine};
    if (!timed) continue;
    const auto slowest = std::max_element(seconds.begin(), seconds.end());
    c.slowest_s.push_back(*slowest);
    c.slowest_rank.push_back(int(slowest - seconds.begin()));
  }
}

void show_progress(const std::string& what, int64_t done, int64_t total) {
  std::cerr << "\r[bench " << what << "] rep " << done << "/" << total
            << (done == total ? "\n" : "") << std::flush;
}

}  // namespace triage::bench
