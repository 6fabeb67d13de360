// manifest.json with nlohmann::json; every missing key or wrong type becomes one line.
#include "checkpoint/manifest.h"

#include <nlohmann/json.hpp>

#include <string>
#include <utility>

#include "common/error.h"
#include "common/json_number.h"

namespace triage {

namespace {

template <class T>
T integer_at(const nlohmann::json& json, const std::string& key, const std::string& path) {
  return whole_number<T>(json.at(key), path + ": " + key);
}

// Group-limited routing as a (kept groups, groups) pair; (0, 0) when it limits nothing.
std::pair<int64_t, int64_t> group_limit(int64_t topk_groups, int64_t num_groups) {
  if (topk_groups == 0 || topk_groups >= num_groups) return {0, 0};
  return {topk_groups, num_groups};
}

// The manifest's recorded config row `key` as an integer; `fallback` where it has none.
int64_t recorded_integer(const nlohmann::json& json, const std::string& key, int64_t fallback,
                         const std::string& path) {
  if (!json.contains("config") || !json["config"].contains(key)) return fallback;
  const std::string text = json["config"][key].get<std::string>();
  try {
    size_t used = 0;
    const long long value = std::stoll(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  throw Error(path + ": config " + key + " = \"" + text + "\"; expected a whole number");
}

// A resume must route as the trained model did. Checkpoints from before num_groups was
// resolved at load record 0, which meant one group per EP rank of their own layout.
void check_same_routing(const nlohmann::json& json, const std::string& path, const Config& c) {
  const int64_t saved_ep = recorded_integer(json, "parallel.expert", 1, path);
  const int64_t saved_topk = recorded_integer(json, "moe.topk_groups", 0, path);
  int64_t saved_groups = recorded_integer(json, "moe.num_groups", 0, path);
  if (saved_groups == 0) saved_groups = saved_ep;
  const auto saved = group_limit(saved_topk, saved_groups);
  const auto live = group_limit(c.moe.topk_groups, c.moe.num_groups);
  if (saved == live) return;
  auto text = [](std::pair<int64_t, int64_t> limit) {
    return limit.first == 0 ? std::string("no group limit")
                            : "the best " + std::to_string(limit.first) + " of " +
                                  std::to_string(limit.second) + " expert groups";
  };
  throw Error(path + ": the model routes each token within " + text(saved) +
              "; this run would "
              "route within " +
              text(live) + " (moe.topk_groups, moe.num_groups); set them to " +
              std::to_string(saved.first) + " and " + std::to_string(saved.second) +
              " to continue this model");
}

// Expert choice picks within slices of the batch: a resume must cut it as the trained
// model did. Checkpoints from before the slices were recorded chose over the whole batch.
void check_same_slices(const nlohmann::json& json, const std::string& path, const Config& c) {
  if (c.moe.router != RouterKind::kExpertChoice) return;
  int64_t saved = recorded_integer(json, "moe.expert_choice_slices", 1, path);
  if (saved == 0) saved = 1;
  if (saved == c.moe.expert_choice_slices) return;
  throw Error(path + ": the model's experts choose within " + std::to_string(saved) +
              " slice(s) of each batch; this run would cut it into " +
              std::to_string(c.moe.expert_choice_slices) +
              " (moe.expert_choice_slices); set it to " + std::to_string(saved) +
              " to continue this model");
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
    check_same_routing(json, path, config);
    check_same_slices(json, path, config);
    m.step = integer_at<int64_t>(json, "step", path);
    m.samples_seen = integer_at<int64_t>(json, "samples_seen", path);
    m.optimizer_step = integer_at<int64_t>(json, "optimizer_step", path);
    if (m.step < 0 || m.samples_seen < 0 || m.optimizer_step < 0)
      throw Error(path + ": step, samples_seen and optimizer_step must not be negative");
    if (json.contains("optimizer_shards"))
      m.optimizer_shards = integer_at<int64_t>(json, "optimizer_shards", path);
    if (m.optimizer_shards < 0 || m.optimizer_shards > (int64_t(1) << 24))
      throw Error(path + ": optimizer_shards = " + std::to_string(m.optimizer_shards) +
                  "; expected 0 (unsharded) or the world size that saved it");
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
