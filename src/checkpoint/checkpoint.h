// Checkpoints: everything a run needs to continue exactly, stored so that any expert-
// parallel layout can load it.
//
//   <dir>/step-00000100/
//     manifest.json               step, data position, layout, config, per-file bytes + crc32
//                                 (over the whole file, whatever its size)
//     replicated.safetensors      replicated parameters, their AdamW moments, router biases
//                                 and random-generator states
//     expert-00003.safetensors    global expert 3 of every MoE layer, with its AdamW moments
//     optimizer-00002.safetensors  train.shard_optimizer: rank 2's pieces of the AdamW moments
//                                 (then the two files above hold weights only)
//   <dir>/latest                  the name of the newest complete checkpoint
//
// Saving is collective: rank 0 writes the replicated file, the ranks of the first EP group
// write their experts, rank 0 writes the manifest last and renames the folder into place,
// so a crash never leaves a checkpoint that looks complete. Loading verifies every file's
// size and checksum and every tensor's shape before it changes anything: a corrupt or
// truncated checkpoint is refused with an error, never half-loaded. Experts are looked up
// by global id, so a checkpoint saved at one EP size loads at another; moments are looked up
// by logical tensor and element range (moment_pieces.h), so a sharded optimizer's state
// loads at any layout, sharded or not, and an unsharded one's loads sharded.
// The folder must be on a filesystem every rank sees (one machine, or a shared mount).
#pragma once

#include <torch/optim/adamw.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"
#include "common/parameters.h"
#include "config/config.h"
#include "moe/moe_layer.h"
#include "parallel/grad_buckets.h"
#include "parallel/process_groups.h"

namespace triage {

// The live training state a checkpoint saves and restores.
struct TrainingState {
  ParameterList parameters;
  torch::optim::AdamW* optimizer = nullptr;  // unsharded; or `sharded` below
  std::vector<MoeLayer*> moe_layers;
  int64_t step = 0;                          // optimizer steps completed
  int64_t samples_seen = 0;                  // position in the training-example order
  ShardedOptimizerState* sharded = nullptr;  // train.shard_optimizer
};

// Writes <dir>/step-NNNNNNNN and points <dir>/latest at it, then keeps the `keep` most
// recently saved checkpoints of run `run_id` (never the one just written; other runs'
// checkpoints are left alone). Saving a step that exists swaps the new folder in
// atomically, so `latest` always names a complete checkpoint.
// Returns the checkpoint's folder. Collective over groups.world.
// The folder a step's checkpoint is saved in: step-NNNNNNNN.
std::string checkpoint_folder_name(int64_t step);

// The AdamW state of one parameter; created (zero moments, no steps taken) if the optimizer
// has none yet, exactly as AdamW's first step would create it.
torch::optim::AdamWParamState& adamw_state(torch::optim::AdamW& optimizer, const at::Tensor& p);

std::string save_checkpoint(const std::string& dir, const Config& config, ProcessGroups& groups,
                            const TrainingState& state, int64_t keep, const std::string& run_id);

// train.keep_best: <dir>/best names the best checkpoint and its held-out figure
// ("step-NNNNNNNN VALUE"); pruning never removes it. Written atomically by rank 0 alone.
struct BestCheckpoint {
  std::string folder;  // step-NNNNNNNN
  int64_t step = 0;    // NNNNNNNN
  double value = 0;
};
void mark_best_checkpoint(const std::string& dir, const std::string& folder, double value);
std::optional<BestCheckpoint> read_best_checkpoint(const std::string& dir);
// The same, read by rank 0 of `world` and sent to the others, so that every rank decides
// alike (collective over world).
std::optional<BestCheckpoint> read_best_checkpoint(const std::string& dir, Communicator& world);

// Loads <dir>/latest into `state` (parameters, optimizer moments, router state, step,
// samples_seen). Rank 0 reads `latest` and the manifest and sends them; each rank reads and
// verifies its own tensor files, then reads each tensor straight into its place. Throws
// Error naming the file and what is wrong. Collective over the world.
void load_checkpoint(const std::string& dir, const Config& config, ProcessGroups& groups,
                     TrainingState& state);

// A whole checkpoint read by one process with every file verified, for tools that convert
// it (export, inspection) rather than resume training from it.
struct CheckpointContents {
  std::string folder;  // the step folder that was read
  Config config;       // the model and run it was saved from (its manifest)
  CheckpointManifest manifest;
  TensorMap replicated;            // by parameter name (and name#exp_avg, ...), router state
  std::vector<TensorMap> experts;  // by global expert id
};

// dir: a run's checkpoint folder (its `latest` is read) or one step-NNNNNNNN folder.
// Throws Error naming the file and what is wrong.
CheckpointContents read_checkpoint(const std::string& dir);

// Copies the checkpoint's weights into `parameters` of a model that holds every expert
// (gathered from the expert files by global id) and the routers' selection biases.
void load_weights(const CheckpointContents& contents, const ParameterList& parameters,
                  const std::vector<MoeLayer*>& moe_layers);

}  // namespace triage
