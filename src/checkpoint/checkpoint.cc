// Checkpoint save and load; see the header for the layout and guarantees.
#include "checkpoint/checkpoint.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

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
#include <set>
#include <sstream>
#include <tuple>

#include "checkpoint/durable_file.h"
#include "checkpoint/manifest.h"
#include "checkpoint/moment_pieces.h"
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

std::string optimizer_file(int64_t rank) {
  char name[40];
  std::snprintf(name, sizeof name, "optimizer-%05lld.safetensors", static_cast<long long>(rank));
  return name;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open (missing from the checkpoint?)");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string moe_key(size_t layer, const std::string& what) {
  return "moe." + std::to_string(layer) + "." + what;
}

// A tensor file of the checkpoint, verified whole (size and CRC-32 as the manifest records
// them) before it is returned; its tensors are read later, one at a time.
std::unique_ptr<SafetensorsFile> open_verified(const fs::path& folder, const std::string& name,
                                               const CheckpointManifest& manifest) {
  const std::string path = (folder / name).string();
  auto entry = manifest.files.find(name);
  if (entry == manifest.files.end()) throw Error(path + ": not listed in the manifest");
  return std::make_unique<SafetensorsFile>(path,
                                           FileDigest{entry->second.bytes, entry->second.crc32});
}

// `text` as rank 0 has it, on every rank of `world`.
std::string broadcast_text(Communicator& world, const std::string& text) {
  at::Tensor length = at::full({1}, int64_t(text.size()), at::kLong);
  world.broadcast_(length, 0);
  const int64_t bytes = length.item<int64_t>();
  if (bytes == 0) return {};
  at::Tensor data = at::empty({bytes}, at::kByte);
  if (world.rank() == 0) std::memcpy(data.data_ptr(), text.data(), size_t(bytes));
  world.broadcast_(data, 0);
  return std::string(static_cast<const char*>(data.data_ptr()), size_t(bytes));
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

// Refuses a stored tensor whose shape or dtype differs from what the model expects.
void expect_shape(at::IntArrayRef stored, at::ScalarType stored_dtype, const std::string& name,
                  at::IntArrayRef shape, at::ScalarType dtype, const std::string& file) {
  if (stored != shape || stored_dtype != dtype)
    throw Error(file + ": tensor " + name + " is " + shape_text(stored) + " " +
                std::string(c10::toString(stored_dtype)) + "; this model expects " +
                shape_text(shape) + " " + c10::toString(dtype) +
                " (was the model config or train.dtype changed?)");
}

// The stored tensor `name` (read whole), checked against the model's shape and dtype.
const at::Tensor& expect(const TensorMap& tensors, const std::string& name, at::IntArrayRef shape,
                         at::ScalarType dtype, const std::string& file) {
  auto it = tensors.find(name);
  if (it == tensors.end())
    throw Error(file + ": missing tensor " + name + " (a checkpoint of a different model?)");
  expect_shape(it->second.sizes(), it->second.scalar_type(), name, shape, dtype, file);
  return it->second;
}

// A tensor to fill in place from `file`: its header entry is checked now, the bytes are
// read when every check of the checkpoint has passed.
struct PendingRead {
  const SafetensorsFile* file;
  std::string name;
  at::Tensor destination;
};

PendingRead plan_read(const SafetensorsFile& file, const std::string& name,
                      const at::Tensor& destination) {
  const SafetensorsFile::Entry& e = file.entry(name);
  expect_shape(e.shape, e.dtype, name, destination.sizes(), destination.scalar_type(), file.path());
  return {&file, name, destination};
}

}  // namespace

torch::optim::AdamWParamState& adamw_state(torch::optim::AdamW& optimizer, const at::Tensor& p) {
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

  // records[0]: the replicated file; records[1 + g]: expert g; records[1 + experts + r]:
  // rank r's optimizer pieces (sharded). Each row (bytes, crc32), filled by the writer and
  // summed over the world so that rank 0 learns them all.
  const int64_t experts = config.moe.num_experts;
  const int64_t shard_files = state.sharded ? layout.world_size : 0;
  at::Tensor records = at::zeros({experts + 1 + shard_files, 2}, at::kDouble);
  // Each file is streamed from the live tensors (no copy on the CPU; one tensor at a time
  // from a GPU). A size is exact in a double up to 2^53 bytes.
  auto record = [&](int64_t row, const std::string& file, const TensorMap& tensors) {
    const FileDigest digest = write_safetensors((partial / file).string(), tensors);
    records[row][0] = double(digest.bytes);
    records[row][1] = double(digest.crc32);
    fault::inject(fault::Point::kCheckpointFileWritten, layout.world_rank, state.step);
  };
  if (layout.world_rank == 0) {
    TensorMap replicated;
    for (const auto& p : state.parameters) {
      if (p.sharding != Sharding::kReplicated) continue;
      replicated[p.name] = p.tensor;
      if (state.sharded) continue;
      auto& adam = adamw_state(*state.optimizer, p.tensor);
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
    const int64_t first = first_local_expert(layout, config.moe.num_experts),
                  local = experts / layout.ep_size;
    for (int64_t i = 0; i < local; ++i) {
      TensorMap expert;
      for (const auto& p : state.parameters) {
        if (p.sharding != Sharding::kExpert) continue;
        expert[p.name] = p.tensor.detach()[i];
        if (state.sharded) continue;
        auto& adam = adamw_state(*state.optimizer, p.tensor);
        expert[p.name + "#exp_avg"] = adam.exp_avg()[i];
        expert[p.name + "#exp_avg_sq"] = adam.exp_avg_sq()[i];
      }
      record(1 + first + i, expert_file(first + i), expert);
    }
  }
  if (state.sharded) {  // every rank holds its own pieces, and only it
    TensorMap pieces;
    for (const OptimizerShard& shard : state.sharded->shards)
      for (const ShardPiece& piece : shard.pieces) {
        pieces[moment_piece_key(piece.unit, "exp_avg", piece.unit_offset)] =
            shard.exp_avg.narrow(0, piece.chunk_offset, piece.length);
        pieces[moment_piece_key(piece.unit, "exp_avg_sq", piece.unit_offset)] =
            shard.exp_avg_sq.narrow(0, piece.chunk_offset, piece.length);
      }
    record(1 + experts + layout.world_rank, optimizer_file(layout.world_rank), pieces);
  }
  groups.world->allreduce_sum_(records);

  if (layout.world_rank == 0) {
    int64_t optimizer_step = 0;
    if (state.sharded)
      optimizer_step = state.sharded->steps;
    else if (!state.parameters.empty())
      optimizer_step = adamw_state(*state.optimizer, state.parameters[0].tensor).step();
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
        {"optimizer_shards", shard_files},
        {"dtype", name_of(config.train.dtype)}};
    for (const auto& row : config_rows(config)) manifest["config"][row.key] = row.value;
    auto add_file = [&](int64_t row, const std::string& file) {
      manifest["files"][file] = {{"bytes", uint64_t(records[row][0].item<double>())},
                                 {"crc32", uint32_t(records[row][1].item<double>())}};
    };
    add_file(0, "replicated.safetensors");
    for (int64_t g = 0; g < experts; ++g) add_file(1 + g, expert_file(g));
    for (int64_t r = 0; r < shard_files; ++r) add_file(1 + experts + r, optimizer_file(r));
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

std::optional<BestCheckpoint> read_best_checkpoint(const std::string& dir, Communicator& world) {
  std::string line;  // rank 0's reading, "" for none; 17 digits carry the double exactly
  if (world.rank() == 0) {
    if (const auto best = read_best_checkpoint(dir)) {
      std::ostringstream text;
      text.precision(17);
      text << best->folder << " " << best->step << " " << best->value;
      line = text.str();
    }
  }
  line = broadcast_text(world, line);
  if (line.empty()) return std::nullopt;
  BestCheckpoint best;
  std::istringstream(line) >> best.folder >> best.step >> best.value;
  return best;
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

// The checkpoint `latest` names and its manifest's text (rank 0's reads).
std::pair<std::string, std::string> read_latest(const std::string& dir) {
  const fs::path latest = fs::path(dir) / "latest";
  if (!fs::exists(latest))
    throw Error(latest.string() +
                ": no checkpoint to resume from; expected a run that saved one in " + dir);
  std::string name;
  std::ifstream(latest) >> name;
  const fs::path folder = fs::path(dir) / name;
  if (name.empty() || !fs::is_directory(folder))
    throw Error(latest.string() + ": names " + name + ", which is not in " + dir +
                " (deleted by hand?)");
  return {name, read_all((folder / "manifest.json").string())};
}

// Reads, verifies and applies this rank's part of checkpoint `name`; no collectives.
void load_local_part(const std::string& dir, const std::string& name,
                     const std::string& manifest_text, const Config& config, ProcessGroups& groups,
                     TrainingState& state) {
  const fs::path folder = fs::path(dir) / name;
  const std::string manifest_path = (folder / "manifest.json").string();
  const CheckpointManifest manifest = parse_manifest(manifest_text, manifest_path, config);
  // Verify every file this rank needs (size, checksum, every tensor's shape and dtype)
  // before touching the live state; then read each tensor straight into its place, so
  // that loading needs no memory beyond the model's own (and one tensor on a GPU).
  const GroupLayout& layout = groups.layout;
  const auto replicated = open_verified(folder, "replicated.safetensors", manifest);
  const int64_t first = first_local_expert(layout, config.moe.num_experts),
                local = config.moe.num_experts / layout.ep_size;
  std::vector<std::unique_ptr<SafetensorsFile>> experts;
  for (int64_t i = 0; i < local; ++i)
    experts.push_back(open_verified(folder, expert_file(first + i), manifest));

  // The moments: whole beside the weights, or in the pieces of the ranks that saved them.
  MomentPieces moments;
  std::vector<std::unique_ptr<SafetensorsFile>> shard_files;
  for (int64_t r = 0; r < manifest.optimizer_shards; ++r) {
    const std::string file = optimizer_file(r);
    if (!manifest.files.count(file))
      throw Error((folder / file).string() + ": not listed in the manifest");
    // Headers only: whole files are verified below, once it is known which are read.
    shard_files.push_back(std::make_unique<SafetensorsFile>((folder / file).string()));
    moments.add_shard_file(*shard_files.back());
  }
  const char* kMoments[2] = {"exp_avg", "exp_avg_sq"};
  if (manifest.optimizer_shards == 0)
    for (const auto& p : state.parameters)
      for (const char* moment : kMoments) {
        const std::string key = p.name + "#" + moment;
        if (p.sharding == Sharding::kReplicated) {
          moments.add_whole(*replicated, key, p.name, moment);
          continue;
        }
        for (int64_t i = 0; i < local; ++i)
          moments.add_whole(*experts[i], key, expert_unit(first + i, p.name), moment);
      }

  std::vector<PendingRead> reads;
  for (const auto& p : state.parameters) {
    if (p.sharding == Sharding::kReplicated) {
      reads.push_back(plan_read(*replicated, p.name, p.tensor.detach()));
      continue;
    }
    for (int64_t i = 0; i < local; ++i)
      reads.push_back(plan_read(*experts[i], p.name, p.tensor.detach()[i]));
  }
  if (state.sharded) {
    for (const OptimizerShard& shard : state.sharded->shards)
      for (const ShardPiece& piece : shard.pieces) {
        moments.plan(piece.unit, "exp_avg", piece.unit_offset,
                     shard.exp_avg.narrow(0, piece.chunk_offset, piece.length));
        moments.plan(piece.unit, "exp_avg_sq", piece.unit_offset,
                     shard.exp_avg_sq.narrow(0, piece.chunk_offset, piece.length));
      }
  } else {
    for (const auto& p : state.parameters) {
      auto& adam = adamw_state(*state.optimizer, p.tensor);
      const at::Tensor targets[2] = {adam.exp_avg(), adam.exp_avg_sq()};
      for (int k = 0; k < 2; ++k) {
        if (p.sharding == Sharding::kReplicated) {
          moments.plan(p.name, kMoments[k], 0, targets[k].view({-1}));
          continue;
        }
        for (int64_t i = 0; i < local; ++i)
          moments.plan(expert_unit(first + i, p.name), kMoments[k], 0, targets[k][i].view({-1}));
      }
    }
  }
  const std::set<const SafetensorsFile*> used = moments.files_used();
  for (size_t r = 0; r < shard_files.size(); ++r)
    if (used.count(shard_files[r].get())) {
      const ManifestFile& listed = manifest.files.at(optimizer_file(int64_t(r)));
      shard_files[r]->verify(FileDigest{listed.bytes, listed.crc32});
    }
  for (size_t i = 0; i < state.moe_layers.size(); ++i)
    for (const auto& b : state.moe_layers[i]->buffers())
      reads.push_back(plan_read(*replicated, moe_key(i, b.name), b.tensor));

  // All verified: apply.
  c10::NoGradGuard no_grad;
  for (const PendingRead& r : reads) {
    r.file->read_into(r.name, r.destination);
    // Written behind autograd's back: whatever caches a cast of this tensor must see it change.
    r.destination.unsafeGetTensorImpl()->bump_version();
  }
  moments.apply();
  if (state.sharded)
    state.sharded->steps = manifest.optimizer_step;
  else
    for (const auto& p : state.parameters)
      adamw_state(*state.optimizer, p.tensor).step(manifest.optimizer_step);
  state.step = manifest.step;
  state.samples_seen = manifest.samples_seen;
}

}  // namespace

void load_checkpoint(const std::string& dir, const Config& config, ProcessGroups& groups,
                     TrainingState& state) {
  watchdog::Scope scope("loading the checkpoint");
  // Which checkpoint, and what it holds, are decisions every rank must share: rank 0 reads
  // `latest` and the manifest and sends them, since on a shared filesystem right after a
  // restart separate reads can disagree. Each rank then reads only its own tensor files.
  std::string name, manifest_text;
  agree([&] {
    if (groups.layout.world_rank == 0) std::tie(name, manifest_text) = read_latest(dir);
  });
  name = broadcast_text(*groups.world, name);
  manifest_text = broadcast_text(*groups.world, manifest_text);
  // A file only some ranks read may be bad: the ranks agree, and the first to fail says why.
  agree([&] { load_local_part(dir, name, manifest_text, config, groups, state); });
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
  contents.replicated =
      open_verified(folder, "replicated.safetensors", contents.manifest)->read_all();
  for (int64_t e = 0; e < contents.config.moe.num_experts; ++e)
    contents.experts.push_back(
        open_verified(folder, expert_file(e), contents.manifest)->read_all());
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
