// What every `triage bench` shares: wall-clock seconds, robust summaries of repeated
// timings (median and spread, never the mean of a noisy machine), gathering one number
// from every rank, and appending a result as one JSON line.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "config/config.h"

namespace triage::bench {

double now_seconds();

// q in [0, 1], linear between order statistics; median = quantile(values, 0.5).
double quantile(std::vector<double> values, double q);
double median(const std::vector<double>& values);

// {"median_s", "p10_s", "p90_s", "min_s", "max_s", "seconds"}.
nlohmann::ordered_json summary(const std::vector<double>& seconds);

// Every rank's value, in rank order, on every rank (MPI_COMM_WORLD).
std::vector<double> gather_from_ranks(double value);
double slowest_rank(double seconds);  // the largest value over the ranks

// --routing of a benchmark: "uniform" (Kind::kNone: the router decides) or a
// moe.routing_override naming only experts and ranks of this layout; replay's loads are
// read here. Error "--routing R: expected ..." otherwise.
RoutingOverride parse_bench_routing(const std::string& routing, int64_t experts, int64_t ranks,
                                    int64_t top_k);

// MPI_Alltoallv of float rows of `width`: send_rows[p] rows to rank p, recv_rows[p] from
// it, in rank order; the baseline the exchange is held against.
void raw_alltoallv(const float* send, const std::vector<int64_t>& send_rows, float* recv,
                   const std::vector<int64_t>& recv_rows, int64_t width);

// Runs a benchmark under MPI (MPI_Init .. MPI_Finalize); an error every rank found and
// reported once (ReportedFailure) becomes exit status 1, other errors propagate to main.
int run_under_mpi(const std::function<int()>& benchmark);

// Appends one line to `path` (rank 0 only calls it); Error naming the file if it cannot.
void append_json_line(const std::string& path, const nlohmann::ordered_json& record);
// The result line: appended to `path`, or printed on stdout when `path` is empty.
void emit_result(const std::string& path, const nlohmann::ordered_json& record);

}  // namespace triage::bench
