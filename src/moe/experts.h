// The experts (the doctors) of one MoE layer, stored stacked: one tensor per weight kind
// with the expert as leading dimension, so a rank can own a contiguous block of experts
// and a GPU can later run them as one grouped GEMM.
//   gelu:   y = gelu(x @ w_in[e]) @ w_out[e]
//   swiglu: y = (silu(x @ w_gate[e]) * (x @ w_up[e])) @ w_out[e]
// Legend: E experts, D model width, H expert hidden width, R rows (assignments).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/parameters.h"
#include "moe/expert_type.h"

namespace triage {

class Communicator;
struct ExpertLayout;
struct ExpertRowRun;
struct ExpertWeights;

struct ExpertRun {
  int64_t expert;  // local expert index
  int64_t rows;
};

// One run per expert, in expert order: the layout of rows sorted by expert.
std::vector<ExpertRun> runs_per_expert(const std::vector<int64_t>& tokens_per_expert);

class Experts {
 public:
  // Holds global experts first_expert .. first_expert + num_experts - 1. Each expert's
  // initial weights depend only on (seed, global id), so every sharding starts identical.
  Experts(int64_t first_expert, int64_t num_experts, int64_t d_model, int64_t d_hidden,
          ExpertType type, at::ScalarType dtype, uint64_t seed,
          ExpertGemm gemm = ExpertGemm::kAuto);

  // x_RD is a sequence of runs: runs[i].rows consecutive rows for local expert
  // runs[i].expert. Only those rows are computed by that expert; an expert may own several
  // runs (one per source rank after the exchange) or none, and then does no work.
  at::Tensor forward(const at::Tensor& x_RD, const std::vector<ExpertRun>& runs) const;

  // The pipelined exchange across ranks: x_RD packed by global expert, moved and computed
  // as `layout` says (see expert_pipeline.h); returns each packed row's output.
  // while_in_flight, grouped: see run_experts.
  at::Tensor forward_across(const at::Tensor& x_RD, const ExpertLayout& layout, Communicator& ep,
                            const std::function<void()>& while_in_flight = {},
                            bool grouped = false) const;

  // train.recompute experts: backward recomputes the hidden pre-activations instead of
  // keeping them, on every path (run by run or grouped, one process or pipelined).
  void set_recompute(bool recompute) { recompute_ = recompute; }
  bool recompute() const { return recompute_; }
  // Whether rows like x_RD take the grouped GEMM path (setting, device, dtype, alignment).
  bool uses_grouped_gemm(const at::Tensor& x_RD) const;

  int64_t num_experts() const { return w_out_EHD_.size(0); }
  int64_t first_expert() const { return first_expert_; }
  ExpertType type() const { return type_; }
  ParameterList parameters() const;
  // The stacked weights in `dtype`: themselves, or (under bf16 autocast, whose rows arrive
  // in bf16) differentiable casts whose gradients flow back to the float32 weights. A cast
  // is made once per weight update, not per call: it is kept until the optimizer's
  // in-place step (or a checkpoint load) changes a weight's version, so the micro-batches
  // of one step share it, and each backward through it adds to the same .grad.
  ExpertWeights weights(at::ScalarType dtype) const;

 private:
  ExpertType type_;
  ExpertGemm gemm_;
  bool recompute_ = false;
  int64_t first_expert_;
  at::Tensor w_in_EDH_;  // gelu: input projection; swiglu: the gated (silu) branch
  at::Tensor w_up_EDH_;  // swiglu only: the linear branch
  at::Tensor w_out_EHD_;

  struct CastWeights {
    at::ScalarType dtype;
    bool recorded;                  // made with autograd recording (training) or not (eval)
    std::vector<int64_t> versions;  // the weights' version counters when cast
    at::Tensor w_in_EDH, w_up_EDH, w_out_EHD;
  };
  mutable std::optional<CastWeights> cast_;
};

}  // namespace triage
