// The config keys whose value is one of a few names (moe.score_function: softmax | sigmoid,
// ...). The config holds them as enums, parsed once when it is read, so code compares
// enums, never strings. ChoiceNames<E>::names lists each enumerator's name, in order.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <ostream>
#include <string>

#include "common/error.h"

namespace triage {

template <class E>
struct ChoiceNames;

enum class Positions { kRotary, kLearned };
template <>
struct ChoiceNames<Positions> {
  static constexpr std::array names{"rotary", "learned"};
};

// RMSNorm on queries and keys before RoPE (model.qk_norm): over each head (Qwen3), or over
// the whole query and key projections (OLMoE).
enum class QkNorm { kNone, kHead, kProjection };
template <>
struct ChoiceNames<QkNorm> {
  static constexpr std::array names{"none", "head", "projection"};
};

enum class ExpertType {
  kSwiglu,  // silu(x W_gate) * (x W_up), then W_down: three matrices
  kGelu,    // gelu(x W_in), then W_out: two matrices
};
template <>
struct ChoiceNames<ExpertType> {
  static constexpr std::array names{"swiglu", "gelu"};
};

enum class ScoreFunction { kSoftmax, kSigmoid };
template <>
struct ChoiceNames<ScoreFunction> {
  static constexpr std::array names{"softmax", "sigmoid"};
};

enum class DropPolicy {
  kPosition,  // each expert keeps its earliest tokens (batch order)
  kScore,     // each expert keeps its highest-scoring tokens (ties: earlier token)
};
template <>
struct ChoiceNames<DropPolicy> {
  static constexpr std::array names{"position", "score"};
};

enum class BalanceLossMode {
  kGlobal,  // the balance statistics of the whole global batch (one all-reduce)
  kLocal,   // each rank's own micro-batch
};
template <>
struct ChoiceNames<BalanceLossMode> {
  static constexpr std::array names{"global", "local"};
};

enum class BalanceLossScope {
  kBatch,     // the Switch loss over all tokens of the batch
  kSequence,  // DeepSeek-V3's sequence-wise loss: each sequence's own, averaged
};
template <>
struct ChoiceNames<BalanceLossScope> {
  static constexpr std::array names{"batch", "sequence"};
};

enum class RoutingLevel {
  kToken,     // each token is routed on its own hidden state
  kSequence,  // each sequence on the masked mean of its hidden states; its tokens follow
};
template <>
struct ChoiceNames<RoutingLevel> {
  static constexpr std::array names{"token", "sequence"};
};

enum class RouterKind {
  kTokenChoice,   // each token (or sequence) picks its top-k experts
  kExpertChoice,  // each expert picks its top-C tokens (or sequences), Zhou et al. 2022
};
template <>
struct ChoiceNames<RouterKind> {
  static constexpr std::array names{"token_choice", "expert_choice"};
};

enum class RouterNoise {
  kNone,
  kJitter,   // Switch: router input *= U(1 - jitter_noise, 1 + jitter_noise)
  kShazeer,  // Shazeer 2017: logits += N(0, 1) * softplus(x @ noise_gate^T), learned
};
template <>
struct ChoiceNames<RouterNoise> {
  static constexpr std::array names{"none", "jitter", "shazeer"};
};

enum class BalanceLossType {
  kSwitch,     // alpha * E * sum_i f_i P_i
  kCvSquared,  // Shazeer: alpha * (CV^2(importance) + CV^2(load)), needs noise shazeer
};
template <>
struct ChoiceNames<BalanceLossType> {
  static constexpr std::array names{"switch", "cv_squared"};
};

// How the experts' matrices are applied to their rows.
enum class ExpertGemm {
  kAuto,     // grouped on CUDA when the shapes allow it, else loop
  kGrouped,  // rows regrouped by expert, one at::_grouped_mm per matrix
  kLoop,     // one GEMM per (run, matrix), pipelined with the exchange
};
template <>
struct ChoiceNames<ExpertGemm> {
  static constexpr std::array names{"auto", "grouped", "loop"};
};

// What crosses between EP ranks for a token (moe.dispatch).
enum class Dispatch {
  kAuto,       // per_rank, or per_choice on a GPU
  kPerRank,    // one row per (token, destination rank); that rank sums its experts' outputs
  kPerChoice,  // one row per kept choice, there and back
};
template <>
struct ChoiceNames<Dispatch> {
  static constexpr std::array names{"auto", "per_rank", "per_choice"};
};

// How the exchange crosses hosts (moe.exchange).
enum class Exchange {
  kAuto,          // hierarchical where the EP group spans hosts of several ranks each (CPU)
  kFlat,          // every EP rank exchanges with every other directly
  kHierarchical,  // once per (token, host) over the network, then fanned out on the host
};
template <>
struct ChoiceNames<Exchange> {
  static constexpr std::array names{"auto", "flat", "hierarchical"};
};

enum class DType { kFloat32, kFloat64 };
template <>
struct ChoiceNames<DType> {
  static constexpr std::array names{"float32", "float64"};
};

enum class DeviceKind { kCpu, kCuda };
template <>
struct ChoiceNames<DeviceKind> {
  static constexpr std::array names{"cpu", "cuda"};
};

enum class Precision { kFp32, kBf16 };
template <>
struct ChoiceNames<Precision> {
  static constexpr std::array names{"fp32", "bf16"};
};

// The dtype gradients travel in (train.grad_reduce_dtype); sums are taken in the
// parameters' own dtype as the pieces arrive. float32 keeps float64 runs in float64.
enum class GradReduceDtype { kFloat32, kBf16 };
template <>
struct ChoiceNames<GradReduceDtype> {
  static constexpr std::array names{"float32", "bf16"};
};

// What backward recomputes instead of keeping from forward (train.recompute).
enum class Recompute {
  kNone,
  kExperts,  // the experts' hidden pre-activations (rows x d_expert, two per swiglu expert)
  kBlock,    // everything inside each block: only its input is kept (activation checkpointing)
};
template <>
struct ChoiceNames<Recompute> {
  static constexpr std::array names{"none", "experts", "block"};
};

enum class Loss { kLm, kClassify, kLmAndClassify };
template <>
struct ChoiceNames<Loss> {
  static constexpr std::array names{"lm", "classify", "lm+classify"};
};

enum class DataKind { kSynthetic, kProteins, kText, kTokens };
template <>
struct ChoiceNames<DataKind> {
  static constexpr std::array names{"synthetic", "proteins", "text", "tokens"};
};

// The held-out figure train.keep_best and train.early_stop_patience watch (lower is better).
enum class KeepBest {
  kNone,
  kEvalLmLoss,  // the held-out next-token loss
  kEvalLoss,    // the held-out task loss: lm + classification, as train.loss has them
};
template <>
struct ChoiceNames<KeepBest> {
  static constexpr std::array names{"none", "eval_lm_loss", "eval_loss"};
};

// A sequence longer than data.seq_len.
enum class TooLong { kError, kSkip, kCrop };
template <>
struct ChoiceNames<TooLong> {
  static constexpr std::array names{"error", "skip", "crop"};
};

template <class E, class = decltype(ChoiceNames<E>::names)>
std::string name_of(E choice) {
  return ChoiceNames<E>::names[static_cast<size_t>(choice)];
}

// The enumerator called `name`, or nothing.
template <class E>
std::optional<E> choice_named(const std::string& name) {
  const auto& names = ChoiceNames<E>::names;
  for (size_t i = 0; i < names.size(); ++i)
    if (name == names[i]) return static_cast<E>(i);
  return std::nullopt;
}

// "one of softmax, sigmoid": what a config message expects.
template <class E>
std::string choice_list() {
  std::string text = "one of ";
  const auto& names = ChoiceNames<E>::names;
  for (size_t i = 0; i < names.size(); ++i) text += (i ? ", " : "") + std::string(names[i]);
  return text;
}

// For a name already checked against the list (a command-line option's set, a test's
// parameters): the enumerator, or Error.
template <class E>
E choice_from(const std::string& name) {
  const std::optional<E> choice = choice_named<E>(name);
  if (!choice) throw Error("\"" + name + "\": expected " + choice_list<E>());
  return *choice;
}

template <class E, class = decltype(ChoiceNames<E>::names)>
std::ostream& operator<<(std::ostream& out, E choice) {
  return out << name_of(choice);
}

}  // namespace triage
