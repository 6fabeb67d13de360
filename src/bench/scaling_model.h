// An alpha-beta model of the expert-parallel MoE layer and training step. Compute phases
// run at measured (or stated) rates; each collective costs a latency plus its busiest
// link's bytes over that link's bandwidth; and since every collective synchronises the
// ranks, the layer's time is the sum, segment by segment, of the slowest rank's compute
// between collectives plus the collectives themselves. Routing enters through each
// expert's share of the assignments, so skew makes one rank's experts and links the
// critical path, as it does in the real layer.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace triage::model {

struct Link {
  double latency_s = 0;      // alpha: one message's fixed cost
  double bandwidth_Bps = 0;  // beta: bytes per second through the busiest endpoint
  // A link shaped by a token bucket (tc tbf, as the virtual hosts' --rate; a cloud NIC's
  // burst allowance) passes this many bytes per message at its unshaped speed, taken as
  // free, when the bucket refilled since the last message (the compute between a step's
  // exchanges is far longer than burst / bandwidth); only the rest meets the bandwidth.
  // Stated, not fitted; 0 for a plain link.
  double burst_bytes = 0;
};

// Seconds `bytes` spend meeting a link's bandwidth: what exceeds its burst.
double shaped_s(double bytes, const Link& link);

struct Params;
// A host's network as one link: inter_host over as many NICs as the host runs ranks, up to
// nics_per_host.
Link host_network(const Params& params, int64_t ranks_per_host);

// Fits (bytes, seconds) points: alpha the fastest message of at most 4 KiB, beta the median
// bandwidth of the sizes within 4x of typical_bytes (the exchange's own), since caches and
// TCP windows bend the line between 8 B and 64 MiB and one size may stall.
Link fit_link(const std::vector<std::pair<double, double>>& points, double typical_bytes);

// AdamW's memory traffic per float32 parameter in a step: it reads the parameter, its
// gradient and two moments (16 bytes) and writes the parameter and moments back (12).
constexpr double kAdamWBytesPerParameter = 28.0;

// Rates are per rank. Bytes count reads plus writes of float32 rows.
struct Params {
  double slots_per_host = 1;    // ranks a host runs at full speed at once (cores at 1 thread, GPUs)
  double activation_bytes = 4;  // per element of an exchanged row (float32 here; bf16 on GPUs: 2)
  double gradient_bytes = 4;    // per element of a synced gradient
  Link intra_host, inter_host;
  // NICs per host, each an inter_host link: a host's off-host traffic spreads over as many of
  // them as it runs ranks (rail-aligned, each rank to its own NIC). Stated; 1 for the virtual
  // hosts, 8 for a DGX-class host.
  double nics_per_host = 1;
  // Measured only when calibration itself ran more ranks than slots on a host: there a
  // collective also waits for the scheduler to run every rank, which this latency holds.
  Link oversubscribed;
  double route_flops_per_s = 0;           // router GEMM 2 T D E, with softmax and top-k
  double pack_bytes_per_s = 0;            // sort/pack: 2 T K D floats
  double expert_forward_flops_per_s = 0;  // 6 R D H (three SwiGLU matrices)
  double combine_bytes_per_s = 0;         // combine: 2 T K D floats
  double combine_backward_bytes_per_s = 0;
  double expert_backward_flops_per_s = 0;  // 12 R D H
  // Optional: the expert rates measured at several rows per expert (GEMMs grow more
  // efficient with rows); between points linear in log(rows), beyond them the end value.
  std::vector<std::pair<double, double>> expert_forward_by_rows, expert_backward_by_rows;
  double pack_route_backward_bytes_per_s = 0;  // 2 T K D floats
  // Attention, dense layers and the head, forward and backward (dense_step_flops); measured
  // on a dense FFN, or on a config's own model (bench calibrate --config), whose small
  // shapes run far below a GEMM's rate.
  double dense_flops_per_s = 0;
  double optimizer_bytes_per_s = 0;      // AdamW's traffic: kAdamWBytesPerParameter each
  std::vector<std::string> assumptions;  // stated, for projections
};

// A rate curve at `rows` (see Params); `fallback` when the curve is empty.
double rate_at(const std::vector<std::pair<double, double>>& curve, double rows, double fallback);

// Reads a params file (JSON); Error naming the file and key on anything missing or bad.
Params read_params(const std::string& path);
nlohmann::ordered_json to_json(const Params& params);

struct Layout {
  int64_t ranks = 1;  // the EP group for a layer; the world for a step
  int64_t ranks_per_host = 1;
  int64_t expert_parallel = 0;  // step only: EP group size (consecutive ranks); 0 = ranks
};

struct LayerShape {
  int64_t tokens_per_rank = 0;
  int64_t d_model = 0;
  int64_t d_expert = 0;
  int64_t experts = 0;
  int64_t top_k = 1;
  int64_t expert_matrices = 3;  // SwiGLU 3, GELU 2
  // Rows a token sends to each EP rank, on average over tokens: moe.dispatch per_rank sends
  // one per rank holding any of its experts (the share of tokens reaching that rank, from
  // the routing: see reach_per_rank). Empty: per_choice, top_k x the rank's share of the
  // assignments.
  std::vector<double> rows_per_token_to_rank;
  // moe.exchange hierarchical: a token crosses to each host holding its experts once (the
  // share of tokens reaching each host, rows_per_token_to_host, from the routing), then fans
  // out to that host's ranks (rows_per_token_to_rank, which must then be given).
  bool hierarchical = false;
  std::vector<double> rows_per_token_to_host;
};

// Phases labelled as phases.h labels them, in `triage bench layer`'s order, plus the
// router all-reduce (a layer), or the phase categories (a step).
struct Prediction {
  std::vector<std::pair<std::string, double>> phases;  // seconds on the critical path
  double total_s = 0;
  double exchange_s = 0;  // the share spent in collectives
};

// expert_shares[e]: expert e's share of all assignments (sums to 1), the routing's skew.
Prediction predict_layer(const Params& params, const Layout& layout, const LayerShape& shape,
                         const std::vector<double>& expert_shares);

struct StepShape {
  LayerShape moe;             // per MoE layer; tokens_per_rank = one micro-batch's slice * seq_len
  int64_t micro_batches = 1;  // a step's (train.grad_accum_steps); the sync follows the last
  int64_t moe_layers = 0;
  int64_t dense_ffn_layers = 0;  // layers with a dense FFN instead of experts
  int64_t dense_ffn_hidden = 0;
  int64_t shared_expert_hidden = 0;  // per MoE layer, a dense SwiGLU every token passes
  int64_t layers = 0;                // attention blocks
  double kv_share = 1;               // key/value heads per query head (grouped-query: < 1)
  double attention_share = 1;        // attention's width (heads x head width) over d_model
  int64_t seq_len = 0;
  int64_t vocab = 0;
  double replicated_parameters = 0;  // synced over the world
  double expert_parameters_per_rank = 0;
  // How the config syncs gradients and keeps optimizer state (train.*):
  bool overlap_grad_sync = false;  // buckets reduce during backward
  double grad_bucket_bytes = 32 << 20;
  bool shard_optimizer = false;    // ZeRO-1: reduce-scatter, 1/DP of AdamW, all-gather
  double gradient_wire_bytes = 0;  // per synced element; 0: Params::gradient_bytes
  double parameter_bytes = 4;      // per parameter element (the all-gather's, sharded)
  // train.recompute: the experts' first GEMMs (gate and up) run again in backward, or every
  // block's forward, exchanges included.
  bool recompute_experts = false;
  bool recompute_blocks = false;
};

// The gradient sync's time that backward does not hide, and the optimizer's. Unsharded:
// an all-reduce per group (replicated over the world, experts over their copies); sharded:
// its reduce-scatter half, then an all-gather of the updated parameters, and AdamW over
// this rank's 1/DP only. With overlap, buckets reduce while the last micro-batch's
// backward runs (2/3 of that micro-batch's compute `compute_s`, 3/4 when blocks are
// recomputed in it): all but the last bucket's share can hide behind it; the all-gather
// cannot.
struct SyncPrediction {
  double reduce_s = 0;   // the whole reduction, hidden or not
  double exposed_s = 0;  // what the step waits for (reduction not hidden + all-gather)
  double optimizer_s = 0;
};
SyncPrediction predict_sync(const Params& params, const Layout& layout, const StepShape& shape,
                            double compute_s);

// The forward + backward FLOPs of a step outside its MoE layers' experts and router:
// attention, dense FFNs, shared experts and the head; the work dense_flops_per_s rates.
double dense_step_flops(const StepShape& shape);

// Step = layers x (attention + FFN or MoE layer) + head, then gradient sync and optimizer.
// Categories: compute, exchange, gradient sync, optimizer.
Prediction predict_step(const Params& params, const Layout& layout, const StepShape& shape,
                        const std::vector<double>& expert_shares);

}  // namespace triage::model
