// manifest.json with nlohmann::json; every missing key or wrong type becomes one line.
#include "checkpoint/manifest.h"

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace triage {

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
    m.num_experts = json.at("num_experts").get<int64_t>();
    if (m.num_experts != config.moe.num_experts)
      throw Error(path + ": num_experts = " + std::to_string(m.num_experts) +
                  "; expected moe.num_experts (" + std::to_string(config.moe.num_experts) + ")");
    m.dtype = json.at("dtype").get<std::string>();
    if (m.dtype != config.train.dtype)
      throw Error(path + ": dtype = \"" + m.dtype + "\"; expected train.dtype (" +
                  config.train.dtype + ")");
    m.step = json.at("step").get<int64_t>();
    m.samples_seen = json.at("samples_seen").get<int64_t>();
    m.optimizer_step = json.at("optimizer_step").get<int64_t>();
    if (m.step < 0 || m.samples_seen < 0 || m.optimizer_step < 0)
      throw Error(path + ": step, samples_seen and optimizer_step must not be negative");
    m.run_id = json.value("run_id", std::string());
    for (const auto& [name, entry] : json.at("files").items())
      m.files[name] = {entry.at("bytes").get<uint64_t>(), entry.at("crc32").get<uint32_t>()};
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed manifest (" + e.what() + ")");
  }
  return m;
}

}  // namespace triage
