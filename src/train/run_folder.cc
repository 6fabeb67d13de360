// Run-folder rules; see the header.
#include "train/run_folder.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "common/error.h"

namespace triage {

namespace fs = std::filesystem;

std::vector<std::string> earlier_run_files(const std::string& out) {
  std::vector<std::string> found;
  for (const char* file : {"metrics.jsonl", "summary.json", "checkpoints/latest"})
    if (fs::exists(fs::path(out) / file)) found.push_back(file);
  const fs::path checkpoints = fs::path(out) / "checkpoints";
  std::error_code ignored;
  if (fs::is_directory(checkpoints, ignored)) {
    std::vector<std::string> steps;
    for (const auto& entry : fs::directory_iterator(checkpoints))
      if (entry.path().filename().string().rfind("step-", 0) == 0)
        steps.push_back("checkpoints/" + entry.path().filename().string());
    std::sort(steps.begin(), steps.end());
    found.insert(found.end(), steps.begin(), steps.end());
  }
  return found;
}

void refuse_to_clobber(const std::string& out, bool resume, bool overwrite) {
  if (resume || overwrite) return;
  const std::vector<std::string> found = earlier_run_files(out);
  if (found.empty()) return;
  std::string list;
  for (size_t i = 0; i < found.size() && i < 3; ++i) list += (i ? ", " : "") + found[i];
  if (found.size() > 3) list += ", ...";
  throw Error(out + ": holds an earlier run (" + list +
              "); continue it with --resume, write elsewhere with --out DIR, or replace it with "
              "--overwrite");
}

void remove_earlier_run(const std::string& out) {
  for (const char* item : {"metrics.jsonl", "summary.json", "run.json", "checkpoints", "ranks",
                           "report.md", "tokenizer.json"})
    fs::remove_all(fs::path(out) / item);
  if (!fs::is_directory(out)) return;
  for (const auto& entry : fs::directory_iterator(out))  // ./launch/report's plots
    if (entry.path().extension() == ".png") fs::remove(entry.path());
}

std::string open_run_id(const std::string& out, bool resume) {
  const fs::path path = fs::path(out) / "run.json";
  if (resume && fs::exists(path)) {
    try {
      std::ifstream in(path);
      return nlohmann::json::parse(in).at("run_id").get<std::string>();
    } catch (const std::exception& e) {
      throw Error(path.string() + ": not a run description (" + e.what() +
                  "); expected {\"run_id\": ...}");
    }
  }
  std::random_device entropy;
  std::ostringstream id;
  id << std::hex
     << ((uint64_t(entropy()) << 32) ^ entropy() ^
         uint64_t(std::chrono::system_clock::now().time_since_epoch().count()));
  fs::create_directories(out);
  std::ofstream(path) << nlohmann::json{{"run_id", id.str()}}.dump() << "\n";
  return id.str();
}

}  // namespace triage
