// How gradients travel: parameters packed into flat buckets of at most bucket_bytes, each
// bucket split into one equal chunk per rank of the group that syncs it (the world for
// replicated parameters, the expert-DP group for experts). The chunks are also the shards
// of the sharded optimizer: rank p of a bucket's group owns elements [p * chunk, (p + 1) *
// chunk) of the bucket, zero-padded at the end.
//
// Buckets are filled walking the parameters backwards (the order backward finishes them)
// and numbered in the order they fill, so that the first to start is the first to be ready.
// Every rank builds the same buckets, since every rank starts their collectives in order.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/parameters.h"
#include "parallel/communicator.h"

namespace triage {

struct GradBucket {
  Communicator* comm = nullptr;
  Sharding sharding = Sharding::kReplicated;
  at::ScalarType dtype = at::kFloat;
  std::vector<size_t> params;    // indices into the ParameterList, in bucket order
  std::vector<int64_t> offsets;  // where each parameter starts in the flat bucket
  int64_t numel = 0;             // real elements
  int64_t chunk = 0;             // elements per rank: numel / ranks, rounded up

  int64_t padded() const { return chunk * comm->size(); }
};

std::vector<GradBucket> make_grad_buckets(const ParameterList& parameters, Communicator& world,
                                          Communicator& expert_dp, int64_t bucket_bytes);

// A run of one logical tensor inside a rank's chunk. A logical tensor is what checkpoints
// name: a replicated parameter, or one global expert's slice of an expert parameter, so
// that pieces keep their meaning at any layout.
struct ShardPiece {
  std::string unit;         // "<parameter>", or "expert.<global id>.<parameter>"
  int64_t unit_offset = 0;  // first element, in the logical tensor's flat order
  int64_t length = 0;
  int64_t chunk_offset = 0;  // where it sits in the chunk
  size_t param = 0;          // the parameter it belongs to
  int64_t param_offset = 0;  // where it sits in that parameter's flat order
};

// The pieces of bucket `b`'s chunk that rank `rank` of its group owns. first_expert: the
// global id of this rank's first local expert.
std::vector<ShardPiece> shard_pieces(const GradBucket& bucket, const ParameterList& parameters,
                                     int rank, int64_t first_expert);

// A sharded optimizer's state for one bucket on this rank: the AdamW moments of its chunk,
// and which logical pieces the chunk holds. Checkpoints save and restore it.
struct OptimizerShard {
  std::vector<ShardPiece> pieces;
  at::Tensor exp_avg, exp_avg_sq;  // [chunk]
};
struct ShardedOptimizerState {
  std::vector<OptimizerShard> shards;  // one per bucket
  int64_t steps = 0;                   // AdamW steps taken (its bias correction)
};

// The checkpoint name of global expert `expert`'s slice of parameter `name`.
std::string expert_unit(int64_t expert, const std::string& name);

}  // namespace triage
