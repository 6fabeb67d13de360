// Bucket layout and the logical pieces of a chunk; see the header.
#include "parallel/grad_buckets.h"

#include <algorithm>
#include <map>
#include <utility>

namespace triage {

std::vector<GradBucket> make_grad_buckets(const ParameterList& parameters, Communicator& world,
                                          Communicator& expert_dp, int64_t bucket_bytes) {
  std::vector<GradBucket> done;
  std::map<std::pair<Sharding, at::ScalarType>, GradBucket> open;
  auto close = [&](GradBucket& bucket) {
    const int64_t ranks = bucket.comm->size();
    bucket.chunk = (bucket.numel + ranks - 1) / ranks;
    done.push_back(std::move(bucket));
    bucket = GradBucket();
  };
  for (size_t i = parameters.size(); i-- > 0;) {
    const NamedParameter& p = parameters[i];
    const auto key = std::make_pair(p.sharding, p.tensor.scalar_type());
    GradBucket& bucket = open[key];
    if (!bucket.params.empty() &&
        (bucket.numel + p.tensor.numel()) * int64_t(p.tensor.element_size()) > bucket_bytes)
      close(bucket);
    if (bucket.params.empty()) {
      bucket.comm = p.sharding == Sharding::kExpert ? &expert_dp : &world;
      bucket.sharding = p.sharding;
      bucket.dtype = p.tensor.scalar_type();
    }
    bucket.params.push_back(i);
    bucket.offsets.push_back(bucket.numel);
    bucket.numel += p.tensor.numel();
  }
  // What is left closes in the order backward finishes it: the bucket whose first
  // parameter comes latest in the model first.
  std::vector<GradBucket*> rest;
  for (auto& [key, bucket] : open)
    if (!bucket.params.empty()) rest.push_back(&bucket);
  std::sort(rest.begin(), rest.end(), [](const GradBucket* a, const GradBucket* b) {
    return a->params.back() > b->params.back();
  });
  for (GradBucket* bucket : rest) close(*bucket);
  return done;
}

std::string expert_unit(int64_t expert, const std::string& name) {
  return "expert." + std::to_string(expert) + "." + name;
}

std::vector<ShardPiece> shard_pieces(const GradBucket& bucket, const ParameterList& parameters,
                                     int rank, int64_t first_expert) {
  const int64_t begin = int64_t(rank) * bucket.chunk, end = begin + bucket.chunk;
  std::vector<ShardPiece> pieces;
  for (size_t k = 0; k < bucket.params.size(); ++k) {
    const NamedParameter& p = parameters[bucket.params[k]];
    const int64_t start = bucket.offsets[k], numel = p.tensor.numel();
    // A replicated parameter is one logical tensor; an expert parameter [local experts, ...]
    // is one per local expert.
    const bool expert = p.sharding == Sharding::kExpert;
    const int64_t units = expert ? p.tensor.size(0) : 1, unit_numel = numel / units;
    for (int64_t u = 0; u < units; ++u) {
      const int64_t unit_start = start + u * unit_numel;
      const int64_t lo = std::max(begin, unit_start), hi = std::min(end, unit_start + unit_numel);
      if (lo >= hi) continue;
      pieces.push_back({expert ? expert_unit(first_expert + u, p.name) : p.name, lo - unit_start,
                        hi - lo, lo - begin, bucket.params[k], lo - start});
    }
  }
  return pieces;
}

}  // namespace triage
