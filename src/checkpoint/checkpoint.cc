// Checkpoint save and load; see the header for the layout and guarantees.
#include "checkpoint/checkpoint.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"
#include "common/error.h"
#include "common/json_number.h"
#include "parallel/agreement.h"
#include "parallel/fault_injection.h"
#include "parallel/watchdog.h"

namespace triage {

namespace fs = std::filesystem;

namespace {

std::string expert_file(int64_t global_id) {
  char name[32];
  std::snprintf(name, sizeof name, "expert-%05lld.safetensors", static_cast<long long>(global_id));
  return name;
}

uint32_t crc32_of(const std::string& bytes) {
  return uint32_t(crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()),
                        uInt(bytes.size())));
}

void check_posix(bool ok, const std::string& what, const std::string& path) {
  if (!ok) throw Error(path + ": cannot " + what + ": " + std::strerror(errno));
}

// Write and fsync, so that the rename that publishes a checkpoint never exposes a file
// whose bytes are still only in the page cache.
void write_durably(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  check_posix(fd >= 0, "create", path);
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ::close(fd);
    check_posix(n >= 0, "write", path);
    written += size_t(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  check_posix(synced, "fsync", path);
}

void sync_directory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some filesystems do not allow it
  ::fsync(fd);
  ::close(fd);
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open (missing from the checkpoint?)");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The AdamW state of one parameter; created (zero moments) if the optimizer has none yet.
torch::optim::AdamWParamState& adam_state(torch::optim::AdamW& optimizer, const at::Tensor& p) {
  auto& states = optimizer.state();
  auto it = states.find(p.unsafeGetTensorImpl());
  if (it == states.end()) {
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    state->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
    state->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
    it = states.emplace(p.unsafeGetTensorImpl(), std::move(state)).first;
  }
  return static_cast<torch::optim::AdamWParamState&>(*it->second);
}

int64_t first_local_expert(const Config& config, const GroupLayout& layout) {
  return layout.ep_rank * (config.moe.num_experts / layout.ep_size);
}

std::string moe_key(size_t layer, const std::string& what) {
  return "moe." + std::to_string(layer) + "." + what;
}

// Verified file contents: size and crc32 as the manifest records them.
TensorMap read_verified(const fs::path& folder, const std::string& name,
                        const CheckpointManifest& manifest) {
  const std::string path = (folder / name).string();
  auto entry = manifest.files.find(name);
  if (entry == manifest.files.end()) throw Error(path + ": not listed in the manifest");
  const std::string bytes = read_all(path);
  const uint64_t want_bytes = entry->second.bytes;
  if (bytes.size() != want_bytes)
    throw Error(path + ": truncated or overwritten: " + std::to_string(bytes.size()) +
                " bytes, the manifest says " + std::to_string(want_bytes));
  if (crc32_of(bytes) != entry->second.crc32)
    throw Error(path + ": checksum mismatch: the file is corrupt");
  return decode_safetensors(bytes, path);
}

// Puts `fresh` in place of `target` in one atomic step (renameat2 RENAME_EXCHANGE, Linux
// 3.15+), then removes the old folder: a crash in between leaves either the old or the
// new checkpoint complete under `target`, never neither. Without the exchange (an old
// kernel, or a filesystem without it) the old folder is moved aside first.
void replace_folder(const fs::path& fresh, const fs::path& target) {
  if (!fs::exists(target)) {
    fs::rename(fresh, target);
    return;
  }
  constexpr unsigned kRenameExchange = 1u << 1;
  if (::syscall(SYS_renameat2, AT_FDCWD, fresh.c_str(), AT_FDCWD, target.c_str(),
                kRenameExchange) == 0) {
    fs::remove_all(fresh);  // now the old checkpoint
    return;
  }
  const fs::path aside = target.string() + ".replaced";
  fs::remove_all(aside);
  fs::rename(target, aside);
  fs::rename(fresh, target);
  fs::remove_all(aside);
}

// The run id and save time a checkpoint's manifest records ("" and 0 when unreadable).
std::pair<std::string, int64_t> manifest_origin(const fs::path& folder) {
  try {
    std::ifstream in(folder / "manifest.json");
    nlohmann::json m = nlohmann::json::parse(in);
    const std::optional<int64_t> saved_at_ns =
        m.contains("saved_at_ns") ? whole_number_or_none<int64_t>(m["saved_at_ns"]) : 0;
    return {m.value("run_id", std::string()), saved_at_ns.value_or(0)};
  } catch (const std::exception&) {
    return {"", 0};
  }
}

// Removes run_id's complete checkpoints beyond the `keep` most recently saved, sparing
// `just_written` and the one <dir>/best names.
void prune(const fs::path& dir, const std::string& run_id, int64_t keep,
           const fs::path& just_written) {
  const std::optional<BestCheckpoint> best = read_best_checkpoint(dir.string());
  std::vector<std::pair<int64_t, fs::path>> own;  // (saved at, folder)
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string n = entry.path().filename().string();
    if (!entry.is_directory() || n.rfind("step-", 0) != 0 || n.find('.') != std::string::npos)
      continue;
    if (best && n == best->folder) continue;
    auto [id, saved_at] = manifest_origin(entry.path());
    if (id == run_id && entry.path() != just_written) own.push_back({saved_at, entry.path()});
  }
  std::sort(own.rbegin(), own.rend());  // newest first
  for (size_t i = size_t(std::max<int64_t>(0, keep - 1)); i < own.size(); ++i)
    fs::remove_all(own[i].second);
}

std::string shape_text(at::IntArrayRef shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

// The stored tensor `name`, checked against the shape and dtype the model expects.
const at::Tensor& expect(const TensorMap& tensors, const std::string& name, at::IntArrayRef shape,
                         at::ScalarType dtype, const std::string& file) {
  auto it = tensors.find(name);
  if (it == tensors.end())
    throw Error(file + ": missing tensor " + name + " (a checkpoint of a different model?)");
  if (it->second.sizes() != shape || it->second.scalar_type() != dtype)
    throw Error(file + ": tensor " + name + " is " + shape_text(it->second.sizes()) + " " +
                std::string(c10::toString(it->second.scalar_type())) + "; this model expects " +
                shape_text(shape) + " " + c10::toString(dtype) +
                " (was the model config or train.dtype changed?)");
  return it->second;
}

}  // namespace

std::string checkpoint_folder_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
  return name;
}

std::string save_checkpoint(const std::string& dir, const Config& config, ProcessGroups& groups,
                            const TrainingState& state, int64_t keep, const std::string& run_id) {
  const GroupLayout& layout = groups.layout;
  watchdog::Scope scope("checkpoint of step " + std::to_string(state.step));
  const std::string name = checkpoint_folder_name(state.step);
  const fs::path final_dir = fs::path(dir) / name;
  const fs::path partial = fs::path(dir) / (std::string(name) + ".partial");
  if (layout.world_rank == 0) {
    fs::remove_all(partial);
    fs::create_directories(partial);
  }
  groups.world->barrier();

  // records[0]: the replicated file; records[1 + g]: expert g. Each row (bytes, crc32),
  // filled by the writer and summed over the world so that rank 0 learns them all.
  const int64_t experts = config.moe.num_experts;
  at::Tensor records = at::zeros({experts + 1, 2}, at::kDouble);
  auto record = [&](int64_t row, const std::string& file, const TensorMap& tensors) {
    const std::string bytes = encode_safetensors(tensors);
    write_durably((partial / file).string(), bytes);
    records[row][0] = double(bytes.size());
    records[row][1] = double(crc32_of(bytes));
    fault::inject(fault::Point::kCheckpointFileWritten, layout.world_rank, state.step);
  };
  torch::optim::AdamW& optimizer = *state.optimizer;
  if (layout.world_rank == 0) {
    TensorMap replicated;
    for (const auto& p : state.parameters) {
      if (p.sharding != Sharding::kReplicated) continue;
      auto& adam = adam_state(optimizer, p.tensor);
      replicated[p.name] = p.tensor;
      replicated[p.name + "#exp_avg"] = adam.exp_avg();
      replicated[p.name + "#exp_avg_sq"] = adam.exp_avg_sq();
    }
    for (size_t i = 0; i < state.moe_layers.size(); ++i) {
      for (const auto& b : state.moe_layers[i]->buffers())
        replicated[moe_key(i, b.name)] = b.tensor;
    }
    record(0, "replicated.safetensors", replicated);
  }
  if (layout.dp_rank == 0) {  // the first EP group holds every expert once
    const int64_t first = first_local_expert(config, layout), local = experts / layout.ep_size;
    for (int64_t i = 0; i < local; ++i) {
      TensorMap expert;
      for (const auto& p : state.parameters) {
        if (p.sharding != Sharding::kExpert) continue;
        auto& adam = adam_state(optimizer, p.tensor);
        expert[p.name] = p.tensor.detach()[i];
        expert[p.name + "#exp_avg"] = adam.exp_avg()[i];
        expert[p.name + "#exp_avg_sq"] = adam.exp_avg_sq()[i];
      }
      record(1 + first + i, expert_file(first + i), expert);
    }
  }
  groups.world->allreduce_sum_(records);

  if (layout.world_rank == 0) {
    int64_t optimizer_step = 0;
    if (!state.parameters.empty())
      optimizer_step = adam_state(optimizer, state.parameters[0].tensor).step();
    nlohmann::json manifest = {
        {"format", kCheckpointFormat},
        {"step", state.step},
        {"run_id", run_id},
        {"saved_at_ns", int64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count())},
        {"samples_seen", state.samples_seen},
        {"optimizer_step", optimizer_step},
        {"world_size", layout.world_size},
        {"expert_parallel", layout.ep_size},
        {"num_experts", experts},
        {"dtype", name_of(config.train.dtype)}};
    for (const auto& row : config_rows(config)) manifest["config"][row.key] = row.value;
    auto add_file = [&](int64_t row, const std::string& file) {
      manifest["files"][file] = {{"bytes", uint64_t(records[row][0].item<double>())},
                                 {"crc32", uint32_t(records[row][1].item<double>())}};
    };
    add_file(0, "replicated.safetensors");
    for (int64_t g = 0; g < experts; ++g) add_file(1 + g, expert_file(g));
    write_durably((partial / "manifest.json").string(), manifest.dump(2) + "\n");
    sync_directory(partial.string());
    replace_folder(partial, final_dir);
    write_durably((fs::path(dir) / "latest.tmp").string(), std::string(name) + "\n");
    fs::rename(fs::path(dir) / "latest.tmp", fs::path(dir) / "latest");
    sync_directory(dir);
    prune(dir, run_id, keep, final_dir);
  }
  groups.world->barrier();
  return final_dir.string();
}

void mark_best_checkpoint(const std::string& dir, const std::string& folder, double value) {
  std::ostringstream line;
  line.precision(17);
  line << fs::path(folder).filename().string() << " " << value << "\n";
  write_durably((fs::path(dir) / "best.tmp").string(), line.str());
  fs::rename(fs::path(dir) / "best.tmp", fs::path(dir) / "best");
  sync_directory(dir);
}

std::optional<BestCheckpoint> read_best_checkpoint(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "best");
  BestCheckpoint best;
  if (!(in >> best.folder >> best.value) || best.folder.rfind("step-", 0) != 0 ||
      !fs::exists(fs::path(dir) / best.folder))
    return std::nullopt;
  best.step = std::strtoll(best.folder.c_str() + 5, nullptr, 10);
  return best;
}

namespace {

// Reads, verifies and applies this rank's part of the checkpoint; no collectives.
void load_local_part(const std::string& dir, const Config& config, ProcessGroups& groups,
                     TrainingState& state) {
  const fs::path latest = fs::path(dir) / "latest";
  if (!fs::exists(latest))
    throw Error(latest.string() +
                ": no checkpoint to resume from; expected a run that saved one in " + dir);
  std::string name;
  std::ifstream(latest) >> name;
  const fs::path folder = fs::path(dir) / name;
  if (!fs::is_directory(folder))
    throw Error(latest.string() + ": names " + name + ", which is not in " + dir +
                " (deleted by hand?)");
  const std::string manifest_path = (folder / "manifest.json").string();
  const CheckpointManifest manifest =
      parse_manifest(read_all(manifest_path), manifest_path, config);
  // Read and verify everything this rank needs before touching the live state.
  const GroupLayout& layout = groups.layout;
  const std::string replicated_path = (folder / "replicated.safetensors").string();
  const TensorMap replicated = read_verified(folder, "replicated.safetensors", manifest);
  const int64_t first = first_local_expert(config, layout),
                local = config.moe.num_experts / layout.ep_size;
  std::vector<TensorMap> experts;
  for (int64_t i = 0; i < local; ++i)
    experts.push_back(read_verified(folder, expert_file(first + i), manifest));

  struct Assignment {
    at::Tensor target;
    at::Tensor value;
  };
  std::vector<Assignment> assignments;
  std::vector<std::pair<at::Tensor, std::array<at::Tensor, 2>>>
      moments;  // param, (exp_avg, exp_avg_sq)
  for (const auto& p : state.parameters) {
    const at::ScalarType dtype = p.tensor.scalar_type();
    if (p.sharding == Sharding::kReplicated) {
      std::array<at::Tensor, 3> values;
      const char* suffixes[3] = {"", "#exp_avg", "#exp_avg_sq"};
      for (int k = 0; k < 3; ++k)
        values[k] =
            expect(replicated, p.name + suffixes[k], p.tensor.sizes(), dtype, replicated_path);
      assignments.push_back({p.tensor, values[0]});
      moments.push_back({p.tensor, {values[1], values[2]}});
      continue;
    }
    std::array<std::vector<at::Tensor>, 3> slices;
    for (int64_t i = 0; i < local; ++i) {
      const std::string file = (folder / expert_file(first + i)).string();
      const char* suffixes[3] = {"", "#exp_avg", "#exp_avg_sq"};
      for (int k = 0; k < 3; ++k)
        slices[k].push_back(
            expect(experts[i], p.name + suffixes[k], p.tensor.sizes().slice(1), dtype, file));
    }
    assignments.push_back({p.tensor, at::stack(slices[0])});
    moments.push_back({p.tensor, {at::stack(slices[1]), at::stack(slices[2])}});
  }
  std::vector<std::pair<at::Tensor, at::Tensor>> buffers;
  for (size_t i = 0; i < state.moe_layers.size(); ++i) {
    for (const auto& b : state.moe_layers[i]->buffers())
      buffers.push_back({b.tensor, expect(replicated, moe_key(i, b.name), b.tensor.sizes(),
                                          b.tensor.scalar_type(), replicated_path)});
  }

  // All verified: apply.
  c10::NoGradGuard no_grad;
  for (auto& a : assignments) a.target.copy_(a.value);
  const int64_t optimizer_step = manifest.optimizer_step;
  for (auto& [param, pair] : moments) {
    auto& adam = adam_state(*state.optimizer, param);
    adam.step(optimizer_step);
    adam.exp_avg(pair[0].to(param.device(), /*non_blocking=*/false, /*copy=*/true));
    adam.exp_avg_sq(pair[1].to(param.device(), /*non_blocking=*/false, /*copy=*/true));
  }
  for (auto& [buffer, value] : buffers) buffer.copy_(value);
  state.step = manifest.step;
  state.samples_seen = manifest.samples_seen;
}

}  // namespace

void load_checkpoint(const std::string& dir, const Config& config, ProcessGroups& groups,
                     TrainingState& state) {
  watchdog::Scope scope("loading the checkpoint");
  // A file only some ranks read may be bad: the ranks agree, and the first to fail says why.
  agree([&] { load_local_part(dir, config, groups, state); });
}

CheckpointContents read_checkpoint(const std::string& dir) {
  fs::path folder = dir;
  if (fs::exists(folder / "latest")) {
    std::string name;
    std::ifstream(folder / "latest") >> name;
    folder /= name;
  }
  const std::string manifest_path = (folder / "manifest.json").string();
  if (!fs::exists(manifest_path))
    throw Error(dir +
                ": not a checkpoint; expected a folder with manifest.json, or a run's checkpoints "
                "folder with a `latest` file");
  CheckpointContents contents;
  contents.folder = folder.string();
  const std::string text = read_all(manifest_path);
  // The manifest records the whole config as key -> value rows; they rebuild it exactly.
  std::vector<std::string> rows;
  try {
    const nlohmann::json manifest = nlohmann::json::parse(text);  // outlives the loop below
    for (const auto& [key, value] : manifest.at("config").items())
      rows.push_back(key + "=" + value.get<std::string>());
  } catch (const nlohmann::json::exception& e) {
    throw Error(manifest_path + ": no readable config in the manifest: " + e.what());
  }
  try {
    contents.config = default_config(rows);
  } catch (const Error& e) {
    throw Error(manifest_path + ": its config: " + e.what());
  }
  contents.manifest = parse_manifest(text, manifest_path, contents.config);
  contents.replicated = read_verified(folder, "replicated.safetensors", contents.manifest);
  for (int64_t e = 0; e < contents.config.moe.num_experts; ++e)
    contents.experts.push_back(read_verified(folder, expert_file(e), contents.manifest));
  return contents;
}

void load_weights(const CheckpointContents& contents, const ParameterList& parameters,
                  const std::vector<MoeLayer*>& moe_layers) {
  const std::string replicated_path = contents.folder + "/replicated.safetensors";
  c10::NoGradGuard no_grad;
  for (const auto& p : parameters) {
    const at::ScalarType dtype = p.tensor.scalar_type();
    if (p.sharding == Sharding::kReplicated) {
      p.tensor.copy_(expect(contents.replicated, p.name, p.tensor.sizes(), dtype, replicated_path));
      continue;
    }
    TRIAGE_ASSERT(p.tensor.size(0) == int64_t(contents.experts.size()),
                  p.name << " holds " << p.tensor.size(0) << " experts; the checkpoint has "
                         << contents.experts.size());
    for (size_t e = 0; e < contents.experts.size(); ++e)
      p.tensor[int64_t(e)].copy_(expect(contents.experts[e], p.name, p.tensor.sizes().slice(1),
                                        dtype, contents.folder + "/" + expert_file(int64_t(e))));
  }
  for (size_t i = 0; i < moe_layers.size(); ++i)
    for (const auto& b : moe_layers[i]->buffers())
      b.tensor.copy_(expect(contents.replicated, moe_key(i, b.name), b.tensor.sizes(),
                            b.tensor.scalar_type(), replicated_path));
}

}  // namespace triage
