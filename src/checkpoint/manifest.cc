// manifest.json with nlohmann::json; every missing key or wrong type becomes one line.
#include "checkpoint/manifest.h"

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/json_number.h"

namespace triage {

namespace {

template <class T>
T integer_at(const nlohmann::json& json, const std::string& key, const std::string& path) {
  return whole_number<T>(json.at(key), path + ": " + key);
}

}  // namespace

CheckpointManifest parse_manifest(const std::string& text, const std::string& path,
                                  const Config& config) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON (" + e.what() + ")");
  }
  CheckpointManifest m;
  try {
    if (!json.is_object()) throw Error(path + ": expected a JSON object");
    const nlohmann::json& format = json.at("format");
    if (format != kCheckpointFormat)
      throw Error(path + ": format " + format.dump() + "; expected \"" + kCheckpointFormat + "\"");
    m.num_experts = integer_at<int64_t>(json, "num_experts", path);
    if (m.num_experts != config.moe.num_experts)
      throw Error(path + ": num_experts = " + std::to_string(m.num_experts) +
                  "; expected moe.num_experts (" + std::to_string(config.moe.num_experts) + ")");
    m.dtype = json.at("dtype").get<std::string>();
    if (m.dtype != name_of(config.train.dtype))
      throw Error(path + ": dtype = \"" + m.dtype + "\"; expected train.dtype (" +
                  name_of(config.train.dtype) + ")");
    m.step = integer_at<int64_t>(json, "step", path);
    m.samples_seen = integer_at<int64_t>(json, "samples_seen", path);
    m.optimizer_step = integer_at<int64_t>(json, "optimizer_step", path);
    if (m.step < 0 || m.samples_seen < 0 || m.optimizer_step < 0)
      throw Error(path + ": step, samples_seen and optimizer_step must not be negative");
    m.run_id = json.value("run_id", std::string());
    for (const auto& [name, entry] : json.at("files").items())
      m.files[name] = {integer_at<uint64_t>(entry, "bytes", path + " " + name),
                       integer_at<uint32_t>(entry, "crc32", path + " " + name)};
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed manifest (" + e.what() + ")");
  }
  return m;
}

}  // namespace triage
