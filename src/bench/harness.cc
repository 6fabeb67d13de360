// Running a benchmark under MPI and writing its JSON; see the header.
#include "bench/harness.h"

#include <fstream>
#include <iostream>

#include "common/error.h"
#include "parallel/agreement.h"
#include "parallel/mpi_environment.h"

namespace triage::bench {

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

void emit_result(const std::string& path, const nlohmann::ordered_json& record) {
  if (path.empty()) {
    std::cout << record.dump() << "\n";
  } else {
    append_json_line(path, record);
  }
}

void write_result(const std::string& path, const nlohmann::ordered_json& record) {
  if (path.empty()) {
    std::cout << record.dump() << "\n";
    return;
  }
  std::ofstream file(path);
  if (!file) throw Error(path + ": cannot write the benchmark result");
  file << record.dump(2) << "\n";
  if (!file) throw Error(path + ": writing the benchmark result failed");
}

}  // namespace triage::bench
