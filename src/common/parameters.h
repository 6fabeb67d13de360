// A model's trainable tensors, by name. Plain tensors (not torch::nn::Module) keep
// compile times low and make sharding experts by global id explicit in later layers.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace triage {

// How a parameter is laid out across ranks, which decides how its gradient is synced.
enum class Sharding {
  kReplicated,  // every rank holds it (router, attention, ...): averaged over the world
  kExpert,      // one EP shard holds it: summed over the expert-data-parallel group
};

struct NamedParameter {
  std::string name;
  at::Tensor tensor;  // requires_grad; its .grad() is filled by backward()
  Sharding sharding = Sharding::kReplicated;
};
using ParameterList = std::vector<NamedParameter>;

// State a layer keeps across steps that no gradient trains (PyTorch's persistent buffers,
// e.g. the aux-loss-free expert bias): checkpointed and moved with the model.
struct NamedBuffer {
  std::string name;
  at::Tensor tensor;  // updated in place; never requires_grad
};
using BufferList = std::vector<NamedBuffer>;

// Appends `inner` to `outer`, each name prefixed with "prefix.".
inline void append_parameters(ParameterList& outer, const std::string& prefix,
                              const ParameterList& inner) {
  for (const auto& p : inner) outer.push_back({prefix + "." + p.name, p.tensor, p.sharding});
}

// Moves every tensor to `device` in place: the same tensors (set_data), so optimizers and
// lists that hold them stay valid.
template <typename NamedTensorList>
void move_tensors(const NamedTensorList& list, at::Device device) {
  for (const auto& named : list) {
    at::Tensor handle = named.tensor;
    handle.set_data(handle.to(device));
  }
}

// GPT-2's initialisation: weights drawn from N(0, 0.02^2) (residual output projections
// scaled further by 1/sqrt(2 * layers), see Transformer).
constexpr double kInitStd = 0.02;

// A fresh leaf parameter drawn from N(0, std^2) with the given generator.
inline at::Tensor normal_parameter(at::IntArrayRef shape, double std, at::ScalarType dtype,
                                   at::Generator& generator) {
  return at::normal(0.0, std, shape, generator, at::TensorOptions().dtype(dtype))
      .set_requires_grad(true);
}

}  // namespace triage
