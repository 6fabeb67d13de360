// Activation checkpointing (train.recompute block): run a block without keeping what its
// backward needs, and run it again in backward.
//
// Forward runs `block` with autograd off, so only its input is kept. When backward reaches
// the block's outputs, the block runs again on that input with autograd on (`replay` true)
// and backward goes through the replay: its parameters' gradients accumulate as they would
// have, and the input's gradient flows on. The replay must compute what the first run did,
// bit for bit: the same collectives in the same order on every rank (every rank's backward
// visits the blocks in one order) and draws keyed by the step, never by a generator's state.
// Work with side effects (statistics a layer reports) is the caller's to skip when replaying.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace triage {

using ReplayableBlock =
    std::function<std::vector<at::Tensor>(const at::Tensor& input, bool replay)>;

// The block's outputs, whose backward replays it. Floating outputs only; one that the
// replay leaves outside autograd (a constant) gets no gradient. An input that needs no
// gradient (or autograd off) runs the block once, as usual.
std::vector<at::Tensor> recompute_in_backward(const at::Tensor& input, ReplayableBlock block);

// How many replays backward has run in this process (tests prove recompute happened).
int64_t replayed_blocks();

}  // namespace triage
