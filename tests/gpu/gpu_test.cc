// The GPU path against the CPU float64 reference. Every test skips, with the reason, on a
// machine where no GPU is visible or a build without CUDA (CTest then reports it skipped);
// a visible GPU that LibTorch cannot use is a failure, not a skip.
// Tolerances: float32 has a unit roundoff of 6e-8; sums over at most a few hundred
// products, through a few layers, stay well inside 1e-5 relative. bfloat16 keeps 8
// significant bits (unit roundoff u = 2^-8 = 4e-3); the layer rounds four times (rows,
// weights, hidden activations, outputs; GEMMs accumulate in float32), so its error stays
// within about 4u: 2e-2 of the largest value. Rehearsed on the CPU's bf16 autocast at
// these shapes: 6e-3 to 8e-3 (output, input and every weight gradient); float32 6e-7.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>
#include <iostream>
#ifdef TRIAGE_HAVE_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "../mpi/communicator_checks.h"
#include "../mpi/mpi_test_support.h"
#include "../unit/test_support.h"
#include "cuda/device_query.h"
#include "model/transformer.h"
#include "moe/exchange.h"
#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"

namespace triage {
namespace {

using namespace testing_support;

#define REQUIRE_GPU()                                                                 \
  do {                                                                                \
    GpuInfo info = query_gpus();                                                      \
    if (!info.cuda_built) GTEST_SKIP() << "no GPU test: this build has no CUDA path"; \
    if (info.devices.empty()) GTEST_SKIP() << "no GPU test: " << info.no_gpu_reason;  \
    ASSERT_TRUE(at::hasCUDA()) << "a GPU is visible but LibTorch cannot use it";      \
    select_gpu(0);                                                                    \
  } while (0)

const at::Device kGpu(at::kCUDA, 0);

// max |actual - expected| / max |expected|: relative at every scale (the MPI tests' helper
// is absolute below 1, so a zero gradient of small values would pass it). An expected
// tensor of zeros is refused: it could not tell a right answer from a missing one.
double scaled_error(const at::Tensor& actual, const at::Tensor& expected) {
  const double scale = expected.abs().max().item<double>();
  EXPECT_GT(scale, 0) << "the reference is all zeros: this comparison proves nothing";
  return (actual.to(at::kDouble) - expected).abs().max().item<double>() / std::max(scale, 1e-300);
}

// Copies every parameter of `from` into `to` (any dtype/device), by position.
void copy_parameters(const ParameterList& from, const ParameterList& to) {
  c10::NoGradGuard no_grad;
  ASSERT_EQ(from.size(), to.size());
  for (size_t i = 0; i < from.size(); ++i) to[i].tensor.copy_(from[i].tensor);
}

MoeConfig gpu_moe_config(const std::string& gemm) {
  MoeConfig config = ep_moe_config(8, 2);
  config.d_expert = 32;
  config.expert_gemm = choice_from<ExpertGemm>(gemm);
  config.balance_loss_coef = 0.1;
  config.z_loss_coef = 0.01;
  return config;
}

struct LayerRun {
  at::Tensor loss, y, grad_x;
  std::vector<at::Tensor> grads;
};

LayerRun run_layer(MoeLayer& layer, const at::Tensor& x_in, const at::Tensor& r, bool bf16) {
  LayerRun out;
  at::Tensor x = x_in.detach().clone().set_requires_grad(true);
  const c10::DeviceType device = x.device().type();
  if (bf16) {
    at::autocast::set_autocast_dtype(device, at::kBFloat16);
    at::autocast::set_autocast_enabled(device, true);
  }
  MoeOutput moe = layer.forward(x, true);
  if (bf16) {
    at::autocast::set_autocast_enabled(device, false);
    at::autocast::clear_cache();
  }
  out.y = moe.y.to(at::kCPU, at::kDouble);
  out.loss = objective(moe, r.to(moe.y.device(), moe.y.scalar_type()));
  out.loss.backward();
  out.loss = out.loss.to(at::kCPU, at::kDouble);
  out.grad_x = x.grad().to(at::kCPU, at::kDouble);
  for (const auto& p : layer.parameters())
    out.grads.push_back(p.tensor.grad().to(at::kCPU, at::kDouble));
  return out;
}

// shape: the layer's input, [tokens, 64] or [sequences, length, 64].
void expect_layer_matches_reference(at::Device device, const MoeConfig& config, bool bf16,
                                    double tolerance, std::vector<int64_t> shape = {96, 64}) {
  // The reference multiplies expert by expert: the grouped GEMM takes no float64.
  MoeConfig reference_config = config;
  reference_config.expert_gemm = ExpertGemm::kLoop;
  MoeLayer reference(reference_config, 64, at::kDouble, 3, nullptr);
  MoeLayer gpu(config, 64, at::kFloat, 3, nullptr);
  copy_parameters(reference.parameters(), gpu.parameters());
  move_tensors(gpu.parameters(), device);
  at::Generator gen = generator(4);
  at::Tensor x = at::randn(shape, gen, at::kDouble), r = at::randn(shape, gen, at::kDouble);
  LayerRun want = run_layer(reference, x, r, false);
  LayerRun got = run_layer(gpu, x.to(device, at::kFloat), r, bf16);
  EXPECT_LT(scaled_error(got.loss, want.loss), tolerance);
  EXPECT_LT(scaled_error(got.y, want.y), tolerance);
  EXPECT_LT(scaled_error(got.grad_x, want.grad_x), tolerance);
  for (size_t i = 0; i < want.grads.size(); ++i)
    EXPECT_LT(scaled_error(got.grads[i], want.grads[i]), tolerance)
        << reference.parameters()[i].name;
  if (bf16) {
    // bf16 must have happened: the layer's output differs from float32's by more than
    // float32 roundoff could (bf16 rounds at 4e-3; 1e-4 leaves a factor 40 either way).
    LayerRun fp32 = run_layer(gpu, x.to(device, at::kFloat), r, false);
    EXPECT_GT(scaled_error(got.y, fp32.y), 1e-4)
        << "the bf16 run equals the float32 run: nothing ran in bf16";
  }
}

// The parity tests run on the GPU (`/cuda`, skipped only where no GPU is visible) and, with
// the same code on CPU tensors under CPU autocast, on every machine (`/cpu_rehearsal`), so
// that the tests themselves are known to work before a GPU first runs them.
class GpuPathParity : public testing::TestWithParam<c10::DeviceType> {
 protected:
  at::Device device() const {
    return GetParam() == at::kCUDA ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  }
};

#define REQUIRE_DEVICE() \
  if (GetParam() == at::kCUDA) REQUIRE_GPU()

TEST_P(GpuPathParity, Float32LoopLayerMatchesCpuFloat64) {
  REQUIRE_DEVICE();
  expect_layer_matches_reference(device(), gpu_moe_config("loop"), false, 1e-5);
}

TEST_P(GpuPathParity, Float32GroupedGemmLayerMatchesCpuFloat64) {
  REQUIRE_DEVICE();
  expect_layer_matches_reference(device(), gpu_moe_config("grouped"), false, 1e-5);
}

TEST_P(GpuPathParity, Bf16AutocastLayerMatchesCpuFloat64) {
  REQUIRE_DEVICE();
  expect_layer_matches_reference(device(), gpu_moe_config("auto"), true, 2e-2);
}

// The routing schemes with more moving parts on the device: expert choice (each expert's
// top-C rows) and sequence-level routing (each sequence's mean decides for its tokens).
TEST_P(GpuPathParity, ExpertChoiceAndSequenceRoutingMatchCpuFloat64) {
  REQUIRE_DEVICE();
  MoeConfig expert_choice = gpu_moe_config("loop");
  expert_choice.router = RouterKind::kExpertChoice;
  expert_choice.capacity_factor = 1.0;
  expect_layer_matches_reference(device(), expert_choice, false, 1e-5);
  MoeConfig by_sequence = gpu_moe_config("grouped");
  by_sequence.routing_level = RoutingLevel::kSequence;
  expect_layer_matches_reference(device(), by_sequence, false, 1e-5, {8, 12, 64});
}

// With grouped-query attention (2 key/value heads for 4) and blocks recomputed in backward,
// so that a GPU runs both as the CPU reference does.
TEST_P(GpuPathParity, TransformerTrainingStepLossAndGradientsMatchCpuFloat64) {
  REQUIRE_DEVICE();
  Config config =
      default_config({"model.vocab_size=24", "model.d_model=32", "model.n_heads=4",
                      "model.n_kv_heads=2", "model.d_ff=64", "model.max_seq_len=16",
                      "moe.num_experts=4", "moe.d_expert=32", "moe.num_shared_experts=1",
                      "data.seq_len=16", "model.num_classes=3", "train.recompute=block"});
  Transformer reference(config, at::kDouble, nullptr, nullptr);
  Transformer gpu(config, at::kFloat, nullptr, nullptr);
  copy_parameters(reference.parameters(), gpu.parameters());
  gpu.to(device());
  at::Generator gen = generator(8);
  at::Tensor tokens = at::randint(4, 24, {4, 16}, gen, at::kLong),
             real = at::ones({4, 16}, at::kLong);
  // Both heads count, so that every parameter has a gradient to compare.
  auto loss_of = [](const ModelOutput& out) {
    return at::log_softmax(out.lm_logits_BLV.to(at::kDouble), -1).mean() +
           at::log_softmax(out.class_logits_BC.to(at::kDouble), -1).select(1, 0).mean() +
           out.balance_loss.to(at::kDouble) + out.z_loss.to(at::kDouble);
  };
  at::Tensor want = loss_of(reference.forward(tokens, real, true));
  want.backward();
  at::Tensor got = loss_of(gpu.forward(tokens.to(device()), real.to(device()), true));
  got.backward();
  EXPECT_LT(scaled_error(got.cpu(), want), 1e-5);
  ParameterList r = reference.parameters(), g = gpu.parameters();
  for (size_t i = 0; i < r.size(); ++i)
    EXPECT_LT(scaled_error(g[i].tensor.grad().to(at::kCPU, at::kDouble), r[i].tensor.grad()), 1e-5)
        << r[i].name;
}

INSTANTIATE_TEST_SUITE_P(Devices, GpuPathParity, testing::Values(at::kCUDA, at::kCPU),
                         [](const auto& info) {
                           return info.param == at::kCUDA ? "cuda" : "cpu_rehearsal";
                         });

TEST(GpuNccl, ExchangeRoundTripReturnsTheRowsOnAWorldOfOne) {
  REQUIRE_GPU();
  std::unique_ptr<Communicator> nccl = make_nccl_communicator(MPI_COMM_WORLD, /*timeout_s=*/600);
  ASSERT_EQ(nccl->size(), 1) << "run this test on one rank";
  at::Tensor rows = at::randn({10, 6}, generator(1), at::kFloat).to(kGpu);
  at::Tensor back = nccl->alltoallv_rows(rows, {10}, {10});
  EXPECT_TRUE(at::equal(back.cpu(), rows.cpu()));
  at::Tensor sum = rows.clone();
  nccl->allreduce_sum_(sum);
  EXPECT_TRUE(at::equal(sum.cpu(), rows.cpu()));
  // The MoE exchange with uniform weights (top-1, all kept) is the identity.
  at::Tensor experts = at::randint(0, 4, {10, 1}, generator(2), at::kLong).to(kGpu);
  at::Tensor keep = at::ones({10, 1}, at::TensorOptions().dtype(at::kBool).device(kGpu));
  Dispatched sent = dispatch(rows, experts, keep, 4, *nccl);
  at::Tensor y = combine(exchange_rows(sent.x_RD, sent.plan.layout, *nccl),
                         at::ones({10, 1}, rows.options()), sent.plan);
  EXPECT_TRUE(at::allclose(y.cpu(), rows.cpu()));
  // The pipeline's non-blocking exchange, on the communication stream: rows 2..8 to self.
  at::Tensor landed = at::zeros({10, 6}, rows.options());
  nccl->start_alltoallv_rows(rows, {{2, 6}}, landed, {{4, 6}})->wait();
  EXPECT_TRUE(at::equal(landed.narrow(0, 4, 6).cpu(), rows.narrow(0, 2, 6).cpu()));
}

#ifdef TRIAGE_HAVE_CUDA
// Counts the synchronizing CUDA calls LibTorch reports in its sync debug mode (device-to-
// host copies, .item(), stream and event synchronisation; not NCCL's stream waits).
struct SyncCounter : c10::WarningHandler {
  int syncs = 0;
  void process(const c10::Warning& warning) override {
    if (warning.msg().find("synchroniz") != std::string::npos) ++syncs;
  }
};

// The README's promise, measured: one device-to-host sync per MoE layer forward (the
// per-expert counts, with the statistics riding along) and none in backward, on the paths
// expert_gemm auto takes (loop in float32 and bf16, grouped in bf16), with and without the
// exchange (NCCL on a world of one), with the receive bound on. Backward runs in sync-debug
// error mode: any sync there throws. Not the grouped GEMM in float32: ATen runs it as a
// fallback that copies the offsets to the host (seen on an H200), so auto never takes it.
TEST(GpuMoeLayer, ForwardSyncsOnceForTheExpertCountsAndBackwardNever) {
  REQUIRE_GPU();
  std::unique_ptr<Communicator> nccl = make_nccl_communicator(MPI_COMM_WORLD, /*timeout_s=*/600);
  for (const std::string gemm : {"loop", "grouped"})
    for (bool bf16 : {false, true})
      for (Communicator* ep : {static_cast<Communicator*>(nullptr), nccl.get()}) {
        if (gemm == "grouped" && !bf16) continue;
        SCOPED_TRACE(gemm + (bf16 ? " bf16" : " fp32") + (ep ? " with exchange" : " local"));
        MoeConfig config = gpu_moe_config(gemm);
        config.max_receive_factor = 2.0;
        MoeLayer layer(config, 64, at::kFloat, 3, ep);
        move_tensors(layer.parameters(), kGpu);
        at::Generator gen = generator(4);
        const at::Tensor x = at::randn({96, 64}, gen, at::kFloat).to(kGpu).set_requires_grad(true);
        const at::Tensor r = at::randn({96, 64}, gen, at::kFloat).to(kGpu);
        auto step = [&](int* forward_syncs) {
          if (bf16) {
            at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
            at::autocast::set_autocast_enabled(at::kCUDA, true);
          }
          SyncCounter counter;
          {
            c10::WarningUtils::WarningHandlerGuard guard(&counter);
            if (forward_syncs)
              c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_WARN);
            MoeOutput out = layer.forward(x, true);
            c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
            if (bf16) {
              at::autocast::set_autocast_enabled(at::kCUDA, false);
              at::autocast::clear_cache();
            }
            at::Tensor loss =
                (out.y * r.to(out.y.scalar_type())).sum() + out.balance_loss + out.z_loss;
            if (forward_syncs)
              c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
            EXPECT_NO_THROW(loss.backward()) << "a synchronizing call in backward";
            c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
          }
          if (forward_syncs) *forward_syncs = counter.syncs;
        };
        step(nullptr);  // first calls: handles, workspaces and kernels set up untimed
        int forward_syncs = -1;
        step(&forward_syncs);
        EXPECT_EQ(forward_syncs, 1);
        std::cout << "[syncs] " << gemm << (bf16 ? " bf16" : " fp32")
                  << (ep ? " with exchange" : " local") << ": " << forward_syncs << " in forward"
                  << std::endl;
      }
}
#endif

// The backend checks the MPI backend passes on CPU with every peer (communicator_checks.h):
// on a world of one they still catch a backend that returns its input or ignores offsets.
TEST(GpuNccl, MeetsTheCommunicatorChecksOnAWorldOfOne) {
  REQUIRE_GPU();
  std::unique_ptr<Communicator> nccl = make_nccl_communicator(MPI_COMM_WORLD, /*timeout_s=*/600);
  ASSERT_EQ(nccl->size(), 1) << "run this test on one rank";
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    expect_rows_reach_their_ranks(*nccl, kGpu, dtype);
    expect_started_rows_land_at_their_spans(*nccl, kGpu, dtype);
  }
  expect_allreduce_sums_over_ranks(*nccl, kGpu, at::kFloat);
}

}  // namespace
}  // namespace triage
