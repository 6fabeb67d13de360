// How every `triage bench` runs and reports: under MPI with errors reported once, and its
// result as JSON, one line appended to a file (sweeps collect into one) or printed.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>

namespace triage::bench {

// Runs a benchmark under MPI (MPI_Init .. MPI_Finalize); an error every rank found and
// reported once (ReportedFailure) becomes exit status 1, other errors propagate to main.
int run_under_mpi(const std::function<int()>& benchmark);

// Appends one line to `path` (rank 0 only calls it); Error naming the file if it cannot.
void append_json_line(const std::string& path, const nlohmann::ordered_json& record);
// The result line: appended to `path`, or printed on stdout when `path` is empty.
void emit_result(const std::string& path, const nlohmann::ordered_json& record);
// A result that is a document of its own (a params file, one run's report): `path` is
// replaced by it, indented; printed on one line on stdout when `path` is empty.
void write_result(const std::string& path, const nlohmann::ordered_json& record);

}  // namespace triage::bench
