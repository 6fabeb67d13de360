// Built against the installed Triage package (find_package + Triage::moe), run under
// mpirun: an expert-parallel MoE layer over all ranks must compute what the same layer with
// every expert on one rank computes, in float64: outputs, input gradients, and the gate's
// and every local expert's weight gradients. Prints the largest relative difference of
// each and exits 1 when one exceeds 1e-10.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>

#include "moe/moe_layer.h"
#include "parallel/mpi_environment.h"
#include "parallel/process_groups.h"

namespace {

double relative_difference(const at::Tensor& actual, const at::Tensor& expected) {
  const double scale = std::max(1.0, expected.abs().max().item<double>());
  return (actual - expected).abs().max().item<double>() / scale;
}

}  // namespace

int main(int argc, char** argv) {
  triage::MpiEnvironment mpi(&argc, &argv);
  const int ranks = mpi.world_size(), rank = mpi.world_rank();
  triage::Config config;
  config.moe.num_experts = 8;
  config.moe.top_k = 2;
  config.moe.d_expert = 16;
  config.moe.capacity_factor = 0.0;  // dropless: no token's fate depends on the batch split
  config.moe.balance_loss_coef = 0.0;
  config.moe.z_loss_coef = 0.0;
  config.parallel.expert = ranks;
  triage::ProcessGroups groups = triage::make_process_groups(config);

  // Every rank draws the same global batch and takes its slice.
  const int64_t tokens = 12, width = 8, seed = 7;
  at::manual_seed(1);
  const at::Tensor x_GD = at::randn({ranks * tokens, width}, at::kDouble);
  const at::Tensor r_GD = at::randn({ranks * tokens, width}, at::kDouble);
  const int64_t first = rank * tokens;

  triage::MoeLayer layer(config.moe, width, at::kDouble, seed, groups.ep.get());
  at::Tensor x = x_GD.narrow(0, first, tokens).clone().set_requires_grad(true);
  at::Tensor y = layer.forward(x, /*training=*/true, first).y;
  (y * r_GD.narrow(0, first, tokens)).sum().backward();

  triage::MoeLayer reference(config.moe, width, at::kDouble, seed);
  at::Tensor x_ref = x_GD.clone().set_requires_grad(true);
  at::Tensor y_ref = reference.forward(x_ref, /*training=*/true).y;
  (y_ref * r_GD).sum().backward();

  std::map<std::string, double> differences;
  differences["output"] = relative_difference(y, y_ref.narrow(0, first, tokens));
  differences["input gradient"] =
      relative_difference(x.grad(), x_ref.grad().narrow(0, first, tokens));
  std::map<std::string, at::Tensor> reference_params;
  for (const triage::NamedParameter& p : reference.parameters())
    reference_params[p.name] = p.tensor;
  for (const triage::NamedParameter& p : layer.parameters()) {
    at::Tensor grad = p.tensor.grad().clone(), expected = reference_params.at(p.name).grad();
    if (p.sharding == triage::Sharding::kExpert) {
      // This rank's experts: the reference's rows [rank * local, (rank + 1) * local).
      expected = expected.narrow(0, rank * grad.size(0), grad.size(0));
    } else {
      groups.world->allreduce_sum_(grad);  // each rank holds its own tokens' share
    }
    differences[p.name + " gradient"] = relative_difference(grad, expected);
  }

  bool exact = true;
  for (const auto& [what, difference] : differences) {
    exact = exact && difference <= 1e-10;
    if (rank == 0) std::printf("%-28s %.3g\n", what.c_str(), difference);
  }
  if (rank == 0) std::printf("%d ranks: %s\n", ranks, exact ? "matches" : "DIFFERS");
  return exact ? 0 : 1;
}
