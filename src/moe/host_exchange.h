// The hierarchical exchange (moe.exchange hierarchical): the per_rank exchange
// (token_exchange.h) on two levels. Across hosts, a token travels once to each host that
// holds any of its kept experts, to the EP rank with its own place there (host_levels.h),
// with those choices' ids and gate weights; that rank fans the token out to its host's
// ranks (the per_rank exchange on the host), which return their gate-weighted sums, adds
// them, and sends one row per (token, host) back over the network, where the token's host
// sums are added. Network bytes per token each way: distinct destination hosts x row bytes;
// inter-host messages per rank: hosts - 1.
//
// Sums run in a fixed order (a token's experts on a rank by expert, its ranks on a host in
// the order of their first choices, its hosts likewise), so a run repeats bit for bit and
// agrees with one rank to rounding. Differentiable like the per_rank exchange.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "config/choices.h"
#include "moe/token_exchange.h"
#include "parallel/host_levels.h"

namespace triage {

// What moe.exchange resolves to on this EP group, and why in words for the banner
// ("hierarchical: 4 hosts x 2 EP ranks"). on_gpu: the layer runs on CUDA tensors, where
// auto stays flat (the two levels over NCCL are built but have not run on GPUs yet).
// Collective over ep on its first call.
struct ExchangeChoice {
  bool hierarchical = false;
  std::string why;
};
ExchangeChoice choose_exchange(Exchange setting, Communicator& ep, bool on_gpu = false);

// Arguments as experts_by_token_exchange's, over the EP group's `levels`; chunks pipeline
// the fan-out on each host. sent_units: rows sent to each EP rank (only peers of this
// rank's place, one per host, receive any; this host's own stay home).
TokenExchanged experts_by_host_exchange(
    const at::Tensor& x_TD, const at::Tensor& experts_TK, const at::Tensor& keep_TK,
    const at::Tensor& weights_TK, int64_t num_experts, const Experts& experts,
    const HostLevels& levels, const at::Tensor& extra_counts = {}, const at::Tensor& token_T = {},
    const RowDropout& dropout = {}, const InFlightWork& while_in_flight = {}, int64_t chunks = 1);

// Of these tokens, how many reach each host (the rows a token sends over the network under
// the hierarchical exchange, its own host's included): int64 [levels.hosts].
at::Tensor tokens_reaching_host(const at::Tensor& experts_TK, const at::Tensor& keep_TK,
                                int64_t experts_per_rank, const std::vector<int>& host_of_rank,
                                int64_t hosts);

}  // namespace triage
