// Timing summaries and rank gathering for the benchmarks; see the header.
#include "apps/bench_stats.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>

#include "common/check.h"
#include "common/error.h"
#include "moe/routing_override.h"
#include "parallel/agreement.h"
#include "parallel/mpi_environment.h"

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

RoutingOverride parse_bench_routing(const std::string& routing, int64_t experts, int64_t ranks,
                                    int64_t top_k) {
  if (routing == "uniform") return {};
  RoutingOverride rule;
  try {
    rule = parse_routing_override(routing);
  } catch (const Error& e) {
    throw Error("--routing " + routing + ": expected uniform, " + e.what());
  }
  const int64_t per_rank = experts / ranks;
  if ((rule.kind == RoutingOverride::Kind::kHot && rule.expert >= experts) ||
      (rule.kind == RoutingOverride::Kind::kEmptyRank &&
       (rule.rank >= ranks || top_k > experts - per_rank)))
    throw Error("--routing " + routing + ": expected an expert or rank of this layout (" +
                std::to_string(experts) + " experts on " + std::to_string(ranks) + " ranks)");
  if (rule.kind == RoutingOverride::Kind::kReplay)
    rule.replay_loads = std::make_shared<const std::vector<std::vector<double>>>(
        load_replay_loads(rule.run_dir, experts));
  return rule;
}

void raw_alltoallv(const float* send, const std::vector<int64_t>& send_rows, float* recv,
                   const std::vector<int64_t>& recv_rows, int64_t width) {
  const size_t ranks = send_rows.size();
  std::vector<int> send_counts(ranks), send_offsets(ranks), recv_counts(ranks), recv_offsets(ranks);
  int64_t send_at = 0, recv_at = 0;
  for (size_t p = 0; p < ranks; ++p) {
    send_counts[p] = int(send_rows[p] * width);
    send_offsets[p] = int(send_at);
    recv_counts[p] = int(recv_rows[p] * width);
    recv_offsets[p] = int(recv_at);
    send_at += send_counts[p];
    recv_at += recv_counts[p];
  }
  TRIAGE_MPI_CHECK(MPI_Alltoallv(send, send_counts.data(), send_offsets.data(), MPI_FLOAT, recv,
                                 recv_counts.data(), recv_offsets.data(), MPI_FLOAT,
                                 MPI_COMM_WORLD));
}

int run_under_mpi(const std::function<int()>& benchmark) {
  MpiEnvironment mpi(nullptr, nullptr);
  try {
    return benchmark();
  } catch (const ReportedFailure&) {
    return 1;  // printed once already; MPI shuts down cleanly on every rank
  }
}

void append_json_line(const std::string& path, const nlohmann::ordered_json& record) {
  std::ofstream file(path, std::ios::app);
  if (!file) throw Error(path + ": cannot append the benchmark result");
  file << record.dump() << "\n";
  if (!file) throw Error(path + ": writing the benchmark result failed");
}

}  // namespace triage::bench

namespace triage::bench {

void emit_result(const std::string& path, const nlohmann::ordered_json& record) {
  if (path.empty()) {
    std::cout << record.dump() << "\n";
  } else {
    append_json_line(path, record);
  }
}

}  // namespace triage::bench
