// Contenders run alternately, rep by rep, so machine noise hits them alike; each rep is
// forward + backward of a random batch and ends with a host read (the device sync).
// Active FLOPs per token: top_k experts x 3 matrices (SwiGLU) x 2 D H multiply-adds,
// times 3 for forward + backward; the dense FFN has hidden width top_k * d_expert, the
// same FLOPs. The router, permutation and combine are the MoE layer's overhead.
#include "bench/moe_layer_bench.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "bench/harness.h"
#include "bench/timing.h"
#include "common/error.h"
#include "common/parameters.h"
#include "model/feed_forward.h"
#include "moe/moe_layer.h"

namespace triage {
namespace {

// The nine GEMMs of the SwiGLU experts' forward + backward, and nothing else: each expert's
// share of the rows (as balanced as integers allow) through at::mm into preallocated
// buffers. The floor the GEMM library sets for the expert loop at this many experts: the
// layer cannot grow from 8 to E experts by less than these GEMMs do.
class ExpertGemmsOnly {
 public:
  ExpertGemmsOnly(const bench::LayerShape& o, const at::TensorOptions& options, at::Generator& gen)
      : rows_(o.tokens * o.top_k) {
    auto weights = [&](int64_t in, int64_t out) {
      return (at::randn({o.experts, in, out}, gen, at::kFloat) * kInitStd).to(options);
    };
    w_gate_ = weights(o.d_model, o.d_expert);
    w_up_ = weights(o.d_model, o.d_expert);
    w_down_ = weights(o.d_expert, o.d_model);
    grad_gate_ = at::empty_like(w_gate_);
    grad_up_ = at::empty_like(w_up_);
    grad_down_ = at::empty_like(w_down_);
    x_ = at::randn({rows_, o.d_model}, gen, at::kFloat).to(options);
    grad_x_ = at::empty_like(x_);
    gate_ = at::empty({rows_, o.d_expert}, options);
    up_ = at::empty_like(gate_);
    grad_hidden_ = at::empty_like(gate_);
    y_ = at::empty({rows_, o.d_model}, options);
    grad_y_ = at::randn({rows_, o.d_model}, gen, at::kFloat).to(options);
    for (int64_t e = 0, first = 0; e < o.experts; ++e) {
      const int64_t rows = rows_ / o.experts + (e < rows_ % o.experts ? 1 : 0);
      runs_.push_back({first, rows});
      first += rows;
    }
  }

  at::Tensor step() {
    for (int64_t e = 0; e < int64_t(runs_.size()); ++e) {
      const auto [first, rows] = runs_[size_t(e)];
      if (rows == 0) continue;
      auto cut = [&](const at::Tensor& t) { return t.narrow(0, first, rows); };
      at::Tensor x = cut(x_), gate = cut(gate_), up = cut(up_), y = cut(y_);
      at::Tensor grad_x = cut(grad_x_), grad_y = cut(grad_y_), grad_hidden = cut(grad_hidden_);
      at::mm_out(gate, x, w_gate_[e]);  // forward: gate, up, down
      at::mm_out(up, x, w_up_[e]);
      at::mm_out(y, gate, w_down_[e]);
      at::mm_out(grad_hidden, grad_y, w_down_[e].t());  // backward: three for the inputs
      at::mm_out(grad_x, grad_hidden, w_gate_[e].t());
      grad_x.addmm_(grad_hidden, w_up_[e].t());
      at::Tensor grad_down = grad_down_[e], grad_gate = grad_gate_[e], grad_up = grad_up_[e];
      at::mm_out(grad_down, gate.t(), grad_y);  // and three for the weights
      at::mm_out(grad_gate, x.t(), grad_hidden);
      at::mm_out(grad_up, x.t(), grad_hidden);
    }
    return grad_x_;
  }

 private:
  int64_t rows_;
  at::Tensor w_gate_, w_up_, w_down_, grad_gate_, grad_up_, grad_down_;
  at::Tensor x_, grad_x_, gate_, up_, grad_hidden_, y_, grad_y_;
  std::vector<std::pair<int64_t, int64_t>> runs_;  // (first row, rows) per expert
};

}  // namespace

CLI::App* add_moe_layer_bench(CLI::App& bench, MoeLayerBenchOptions& o) {
  CLI::App* layer = bench.add_subcommand(
      "moe-layer",
      "MoE layer forward+backward vs dense SwiGLU of equal active FLOPs vs expert loop");
  bench::add_layer_shape_options(*layer, o.shape, "Tokens per batch", "Experts");
  bench::add_repetition_options(*layer, o.repetitions);
  layer->add_option("--device", o.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  layer->add_option("--dtype", o.dtype, "float32 or bfloat16")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  bench::add_out_option(*layer, o.out, "Write the JSON result here (default: stdout)");
  return layer;
}

int run_moe_layer_bench(const MoeLayerBenchOptions& o) {
  const bench::LayerShape& s = o.shape;
  bench::check_layer_shape(s);
  const at::Device device = o.device == "cuda" ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  if (device.is_cuda() && !at::hasCUDA())
    throw Error("--device cuda: no CUDA device is visible in this build/machine");
  // bfloat16 as training runs it (train.precision bf16): float32 weights and inputs, the
  // forward under autocast, so the MoE layer casts rows and expert weights itself; only the
  // bare GEMM floor (expert_gemms_only) holds bf16 operands directly.
  const bool bf16 = o.dtype == "bfloat16";
  const at::ScalarType compute_dtype = bf16 ? at::kBFloat16 : at::kFloat;
  const at::ScalarType dtype = at::kFloat;

  MoeConfig config = bench::layer_config(s);  // dropless: every assignment is computed
  config.balance_loss_coef = 0.0;
  config.z_loss_coef = 0.0;
  MoeConfig grouped_config = config, loop_config = config;
  grouped_config.expert_gemm = ExpertGemm::kGrouped;
  loop_config.expert_gemm = ExpertGemm::kLoop;
  MoeLayer grouped(grouped_config, s.d_model, dtype, 1, nullptr);
  MoeLayer loop(loop_config, s.d_model, dtype, 1, nullptr);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(2);
  FeedForward dense(s.d_model, s.top_k * s.d_expert, ExpertType::kSwiglu, kInitStd, dtype, gen);
  move_tensors(grouped.parameters(), device);
  move_tensors(loop.parameters(), device);
  move_tensors(dense.parameters(), device);

  const ParameterList grouped_params = grouped.parameters(), loop_params = loop.parameters(),
                      dense_params = dense.parameters();
  // The current repetition's batch, set before its contenders run.
  at::Tensor x, upstream;
  std::vector<bench::Contender> contenders;
  at::Tensor probe =
      at::zeros({1, s.d_model}, at::TensorOptions().dtype(compute_dtype).device(device));
  bool grouped_ok = true;
  try {
    grouped_ok = grouped.experts().uses_grouped_gemm(probe);
  } catch (const Error& e) {
    grouped_ok = false;
    std::cerr << "[bench] grouped GEMM skipped: " << e.what() << "\n";
  }
  // A contender's work ends with a host read of what it made: the device sync.
  auto synced = [](std::function<at::Tensor()> step) {
    return [step] { (void)step().sum().item<float>(); };
  };
  // An autograd contender: forward, backward, and the input's gradient to wait for.
  auto autograd_step = [&, bf16, device](std::function<at::Tensor(const at::Tensor&)> forward) {
    return synced([&x, &upstream, forward, bf16, device] {
      at::Tensor input = x.detach().clone().set_requires_grad(true);
      if (bf16) {
        at::autocast::set_autocast_dtype(device.type(), at::kBFloat16);
        at::autocast::set_autocast_enabled(device.type(), true);
      }
      at::Tensor y = forward(input);
      if (bf16) {
        at::autocast::set_autocast_enabled(device.type(), false);
        at::autocast::clear_cache();
      }
      y.backward(upstream.to(y.scalar_type()));
      return input.grad();
    });
  };
  if (grouped_ok)
    contenders.push_back({"moe_grouped_gemm", autograd_step([&](const at::Tensor& input) {
                            return grouped.forward(input, true).y;
                          })});
  contenders.push_back({"moe_expert_loop", autograd_step([&](const at::Tensor& input) {
                          return loop.forward(input, true).y;
                        })});
  contenders.push_back({"dense_swiglu_same_flops", autograd_step([&](const at::Tensor& input) {
                          return dense.forward(input);
                        })});
  auto options = at::TensorOptions().dtype(dtype).device(device);
  ExpertGemmsOnly gemms_only(s, options.dtype(compute_dtype), gen);
  contenders.push_back({"expert_gemms_only", synced([&] { return gemms_only.step(); })});
  // The same nine GEMMs over all rows as one expert: the plain matmul rate this device
  // reaches at these shapes, the yardstick for the layer's TFLOP/s.
  bench::LayerShape one_expert = s;
  one_expert.experts = 1;
  ExpertGemmsOnly plain_matmuls(one_expert, options.dtype(compute_dtype), gen);
  contenders.push_back({"matmul_same_flops", synced([&] { return plain_matmuls.step(); })});

  const int64_t repetitions = o.repetitions.warmup + o.repetitions.reps;
  for (int64_t rep = 0; rep < repetitions; ++rep) {
    x = at::randn({s.tokens, s.d_model}, gen, at::TensorOptions().dtype(at::kFloat)).to(options);
    upstream =
        at::randn({s.tokens, s.d_model}, gen, at::TensorOptions().dtype(at::kFloat)).to(options);
    bench::run_repetition(contenders, rep, rep >= o.repetitions.warmup, nullptr, [&] {
      // Like a training step after optimizer.zero_grad(): gradients start unset, so the
      // backward's gradients become .grad instead of being added into a stale one; and
      // after optimizer.step(): the weights' versions move on, so the experts cast them to
      // bf16 again, as each training step does (Experts::weights keeps a cast per version).
      for (const ParameterList* params : {&grouped_params, &loop_params, &dense_params})
        for (const auto& p : *params) {
          p.tensor.mutable_grad() = at::Tensor();
          torch::autograd::impl::bump_version(p.tensor);
        }
      (void)x.sum().item<float>();  // inputs ready before the clock starts
    });
    bench::show_progress("moe-layer", rep + 1, repetitions);
  }

  const double active_flops = bench::active_flops(s, double(s.tokens));
  nlohmann::ordered_json result = {
      {"benchmark", "moe-layer"},   {"device", o.device},
      {"dtype", o.dtype},           {"tokens", s.tokens},
      {"d_model", s.d_model},       {"d_expert", s.d_expert},
      {"experts", s.experts},       {"top_k", s.top_k},
      {"reps", o.repetitions.reps}, {"active_flops_per_step", active_flops}};
  std::cout << "# moe-layer benchmark: " << s.tokens << " tokens, d_model " << s.d_model << ", "
            << s.experts << " SwiGLU experts of " << s.d_expert << ", top-" << s.top_k << ", "
            << o.dtype << " on " << o.device << "; forward+backward, median of "
            << o.repetitions.reps << " alternating reps\n"
            << std::left << std::setw(26) << "what" << std::right << std::setw(10) << "ms"
            << std::setw(14) << "tokens/s" << std::setw(10) << "TFLOP/s"
            << "\n";
  std::map<std::string, double> medians;
  for (const bench::Contender& c : contenders) {
    const double m = bench::median(c.slowest_s);
    medians[c.name] = m;
    result["contenders"][c.name] = {{"median_s", m},
                                    {"tokens_per_s", double(s.tokens) / m},
                                    {"active_tflops", active_flops / m / 1e12},
                                    {"seconds", c.slowest_s}};
    std::cout << std::left << std::setw(26) << c.name << std::right << std::fixed
              << std::setprecision(3) << std::setw(10) << 1000 * m << std::setw(14)
              << std::setprecision(0) << double(s.tokens) / m << std::setw(10)
              << std::setprecision(3) << active_flops / m / 1e12 << "\n";
  }
  const std::string best_moe = grouped_ok ? "moe_grouped_gemm" : "moe_expert_loop";
  result["moe_vs_dense_throughput"] = medians["dense_swiglu_same_flops"] / medians[best_moe];
  std::cout << best_moe << " throughput / dense: " << std::setprecision(3)
            << double(result["moe_vs_dense_throughput"]);
  if (grouped_ok) {
    result["grouped_vs_loop_speedup"] = medians["moe_expert_loop"] / medians["moe_grouped_gemm"];
    std::cout << "; grouped / loop speed-up: " << double(result["grouped_vs_loop_speedup"]);
  }
  // What the experts' GEMMs alone cost against the dense FFN: the part of MoE / dense that
  // the GEMM library sets, however little the layer does around them.
  result["gemms_only_over_dense"] =
      medians["expert_gemms_only"] / medians["dense_swiglu_same_flops"];
  std::cout << "; expert GEMMs alone / dense: " << double(result["gemms_only_over_dense"]);
  result["moe_tflops_over_matmul"] = medians["matmul_same_flops"] / medians[best_moe];
  std::cout << "; " << best_moe
            << " TFLOP/s / plain matmul's: " << double(result["moe_tflops_over_matmul"]);
  std::cout << std::endl;
  bench::write_result(o.out, result);
  return 0;
}

}  // namespace triage
