// Recompute in backward: an autograd node that replays its block; see the header.
#include "model/recompute.h"

#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "parallel/phase_clock.h"

namespace triage {
namespace {

using torch::autograd::variable_list;

std::atomic<int64_t> replays{0};

// Autocast as the first run had it: the replay must take the same casts (bf16 on a GPU).
struct AutocastState {
  bool enabled = at::autocast::is_autocast_enabled(at::kCUDA);
  at::ScalarType dtype = at::autocast::get_autocast_dtype(at::kCUDA);
};

struct ReplayBlockBackward : torch::autograd::Node {
  at::Tensor input;  // detached: the block's input, all that forward kept
  ReplayableBlock block;
  AutocastState autocast;

  std::string name() const override { return "ReplayBlockBackward"; }

  variable_list apply(variable_list&& grads) override {
    at::Tensor x = input.detach().requires_grad_(true);
    std::vector<at::Tensor> outputs;
    {
      const AutocastState outer;
      at::autocast::set_autocast_dtype(at::kCUDA, autocast.dtype);
      at::autocast::set_autocast_enabled(at::kCUDA, autocast.enabled);
      // The replay is forward work: it is timed in the forward phases, then backward goes on.
      const std::optional<Phase> during = phase_clock::current();
      at::AutoGradMode grad_mode(true);
      outputs = block(x, /*replay=*/true);
      ++replays;
      phase_clock::resume(during);
      if (autocast.enabled) at::autocast::clear_cache();
      at::autocast::set_autocast_enabled(at::kCUDA, outer.enabled);
      at::autocast::set_autocast_dtype(at::kCUDA, outer.dtype);
    }
    variable_list roots, root_grads;
    for (size_t i = 0; i < outputs.size() && i < grads.size(); ++i)
      if (grads[i].defined() && outputs[i].requires_grad()) {
        roots.push_back(outputs[i]);
        root_grads.push_back(grads[i]);
      }
    if (!roots.empty()) torch::autograd::backward(roots, root_grads);
    return {x.grad()};
  }

  void release_variables() override {
    input.reset();
    block = nullptr;
  }
};

}  // namespace

int64_t replayed_blocks() { return replays.load(); }

std::vector<at::Tensor> recompute_in_backward(const at::Tensor& input, ReplayableBlock block) {
  // Backward would not reach a block whose input needs no gradient, and its parameters
  // would get none: such a block runs as usual, keeping what its backward needs.
  if (!at::GradMode::is_enabled() || !input.requires_grad()) return block(input, false);
  std::vector<at::Tensor> outputs;
  {
    at::NoGradGuard no_grad;
    outputs = block(input, /*replay=*/false);
  }
  auto node =
      std::shared_ptr<ReplayBlockBackward>(new ReplayBlockBackward(), torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(input));
  node->input = input.detach();
  node->block = std::move(block);
  for (at::Tensor& out : outputs) torch::autograd::set_history(out, node);
  return outputs;
}

}  // namespace triage
