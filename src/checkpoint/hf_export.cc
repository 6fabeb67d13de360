// Triage checkpoint -> Hugging Face transformers layout; see the header.
// Legend: V vocabulary, D model width, H expert width, E experts, S shared width.
#include "checkpoint/hf_export.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "checkpoint/hf_format.h"
#include "common/error.h"
#include "common/json_number.h"
#include "model/attention.h"
#include "model/transformer.h"

namespace triage {
namespace {

namespace fs = std::filesystem;

const at::Tensor& stored(const TensorMap& tensors, const std::string& name,
                         const std::string& file) {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw Error(file + ": missing tensor " + name);
  return it->second;
}

using hf::number;
using hf::transposed;

// What no supported class can represent; empty when the model is exportable.
std::vector<std::string> unrepresentable(const CheckpointContents& c, bool drop_class_head) {
  const Config& config = c.config;
  std::vector<std::string> why;
  if (config.model.positions != Positions::kRotary)
    why.push_back(
        "learned absolute positions (model.positions: " + name_of(config.model.positions) +
        "), where every class (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE) uses rotary positions");
  if (config.moe.expert_type != ExpertType::kSwiglu)
    why.push_back("GELU experts and dense blocks (moe.expert_type: " +
                  name_of(config.moe.expert_type) + "), where every class uses SwiGLU");
  if (config.moe.score_function != ScoreFunction::kSoftmax)
    why.push_back(
        "sigmoid router scores (moe.score_function: " + name_of(config.moe.score_function) +
        "), where every class uses a softmax (transformers' sigmoid-routed class, "
        "DeepSeek-V3, has multi-head latent attention, which this model does not)");
  // QK-norm picks the class (per head: Qwen3-MoE; over the projections: OLMoE); what that
  // class lacks is refused here.
  const ModelConfig& m = config.model;
  const bool dense_blocks = [&] {
    for (int64_t layer = 0; layer < m.n_layers; ++layer)
      if (!is_moe_block(config.moe, layer)) return true;
    return false;
  }();
  if (m.qk_norm != QkNorm::kNone) {
    const std::string cls = m.qk_norm == QkNorm::kHead ? "Qwen3-MoE" : "OLMoE";
    const std::string with =
        " with normed queries and keys (model.qk_norm: " + name_of(m.qk_norm) + ", " + cls + "'s)";
    if (config.moe.num_shared_experts > 0)
      why.push_back("shared experts" + with + ", where " + cls + " has none");
    if (m.qkv_bias)
      why.push_back("attention biases" + with + ", where " + cls +
                    "'s attention_bias would also bias the output projection");
    if (m.qk_norm == QkNorm::kProjection && dense_blocks)
      why.push_back("dense blocks" + with + ", where every OLMoE block is MoE");
    if (m.qk_norm == QkNorm::kProjection && m.n_heads * m.head_width() != m.d_model)
      why.push_back("heads wider than d_model / n_heads" + with +
                    ", where OLMoE's query norm spans hidden_size");
  }
  if (config.moe.routing_level != RoutingLevel::kToken)
    why.push_back("sequence-level routing (moe.routing_level: " +
                  name_of(config.moe.routing_level) + "), where every class routes each token");
  if (config.moe.router != RouterKind::kTokenChoice)
    why.push_back("expert-choice routing (moe.router: " + name_of(config.moe.router) +
                  "), where every class lets each token choose its top-k");
  if (config.moe.topk_groups > 0 && config.moe.topk_groups < config.moe.num_groups)
    why.push_back(
        "group-limited routing (moe.topk_groups: " + std::to_string(config.moe.topk_groups) +
        " of " + std::to_string(config.moe.num_groups) +
        " groups), which no class's router has (each picks its top-k among all "
        "experts)");
  // Training-time noise (moe.noise, its noise gate) and dropout are off at inference: the
  // exported model computes what Triage evaluates.
  if (config.train.loss == Loss::kClassify)
    why.push_back("no language-model head (train.loss: classify)");
  if (config.model.num_classes > 0 && !drop_class_head)
    why.push_back("a sequence-classification head (model.num_classes: " +
                  std::to_string(config.model.num_classes) +
                  "); pass --drop-class-head to export the language model without it");
  for (int64_t layer = 0, moe = 0; layer < config.model.n_layers; ++layer) {
    if (!is_moe_block(config.moe, layer)) continue;
    const std::string key = "moe." + std::to_string(moe++) + ".expert_bias";
    auto bias = c.replicated.find(key);
    if (config.moe.expert_bias && bias != c.replicated.end() &&
        bias->second.abs().max().item<double>() > 0) {
      why.push_back(
          "a learned expert-selection bias (moe.expert_bias: true, nonzero in MoE layer " +
          std::to_string(moe - 1) + "), which no class's router has");
      break;
    }
  }
  return why;
}

}  // namespace

HfModel to_hf_model(const CheckpointContents& c, bool drop_class_head) {
  const std::vector<std::string> why = unrepresentable(c, drop_class_head);
  if (!why.empty()) {
    std::string text = c.folder + ": no transformers class computes this model exactly; it has ";
    for (size_t i = 0; i < why.size(); ++i) text += (i ? "; and " : "") + why[i];
    throw Error(text);
  }
  const Config& config = c.config;
  const ModelConfig& m = config.model;
  const MoeConfig& moe = config.moe;
  std::vector<int64_t> dense_layers;
  for (int64_t layer = 0; layer < m.n_layers; ++layer)
    if (!is_moe_block(moe, layer)) dense_layers.push_back(layer);
  // Triage never renormalises one choice (its weight would always be 1); transformers does.
  const bool renormalised = moe.renormalize && moe.top_k > 1;
  const bool qwen3 = m.qk_norm == QkNorm::kHead, olmoe = m.qk_norm == QkNorm::kProjection;
  const bool mixtral = !qwen3 && !olmoe && dense_layers.empty() && moe.num_shared_experts == 0 &&
                       renormalised && !m.qkv_bias;
  const bool qwen2 = !qwen3 && !olmoe && !mixtral;

  HfModel out;
  out.architecture = mixtral ? "MixtralForCausalLM"
                     : qwen3 ? "Qwen3MoeForCausalLM"
                     : olmoe ? "OlmoeForCausalLM"
                             : "Qwen2MoeForCausalLM";
  const std::string dtype = c.manifest.dtype;
  const std::string replicated = c.folder + "/replicated.safetensors";
  auto weight = [&](const std::string& name) { return stored(c.replicated, name, replicated); };
  TensorMap& t = out.tensors;
  t["model.embed_tokens.weight"] = weight("embedding").contiguous();
  t["model.norm.weight"] = weight("final_norm");
  if (!m.tie_embeddings) t["lm_head.weight"] = transposed(weight("lm_head"));

  const int64_t d = m.d_model;
  for (int64_t layer = 0; layer < m.n_layers; ++layer) {
    const std::string ours = "layers." + std::to_string(layer) + ".";
    const std::string theirs = "model.layers." + std::to_string(layer) + ".";
    t[theirs + "input_layernorm.weight"] = weight(ours + "attention_norm");
    t[theirs + "post_attention_layernorm.weight"] = weight(ours + "ffn_norm");
    // w_qkv's columns are [q | k | v] (H, K, K heads), each head-major: the layout of q_proj,
    // k_proj, v_proj.
    const at::Tensor qkv = weight(ours + "attention.w_qkv");
    const int64_t q_width = m.n_heads * m.head_width(), kv_width = m.kv_heads() * m.head_width();
    t[theirs + "self_attn.q_proj.weight"] = transposed(qkv.narrow(1, 0, q_width));
    t[theirs + "self_attn.k_proj.weight"] = transposed(qkv.narrow(1, q_width, kv_width));
    t[theirs + "self_attn.v_proj.weight"] = transposed(qkv.narrow(1, q_width + kv_width, kv_width));
    if (m.qkv_bias) {
      const at::Tensor bias = weight(ours + "attention.b_qkv");
      t[theirs + "self_attn.q_proj.bias"] = bias.narrow(0, 0, q_width).contiguous();
      t[theirs + "self_attn.k_proj.bias"] = bias.narrow(0, q_width, kv_width).contiguous();
      t[theirs + "self_attn.v_proj.bias"] =
          bias.narrow(0, q_width + kv_width, kv_width).contiguous();
    }
    t[theirs + "self_attn.o_proj.weight"] = transposed(weight(ours + "attention.w_out"));
    if (qwen3 || olmoe) {  // the same shapes: [d] per head (Qwen3), [H d] and [K d] (OLMoE)
      t[theirs + "self_attn.q_norm.weight"] = weight(ours + "attention.q_norm");
      t[theirs + "self_attn.k_norm.weight"] = weight(ours + "attention.k_norm");
    }

    if (!is_moe_block(moe, layer)) {
      t[theirs + "mlp.gate_proj.weight"] = transposed(weight(ours + "dense.w_gate"));
      t[theirs + "mlp.up_proj.weight"] = transposed(weight(ours + "dense.w_up"));
      t[theirs + "mlp.down_proj.weight"] = transposed(weight(ours + "dense.w_out"));
      continue;
    }
    const std::string block = theirs + (mixtral ? "block_sparse_moe." : "mlp.");
    t[block + "gate.weight"] =
        weight(ours + "moe.router.gate").to(weight("embedding").scalar_type());
    for (int64_t e = 0; e < moe.num_experts; ++e) {
      const TensorMap& expert = c.experts[size_t(e)];
      char file_name[40];
      std::snprintf(file_name, sizeof file_name, "/expert-%05lld.safetensors",
                    static_cast<long long>(e));
      const std::string file = c.folder + file_name;
      auto expert_weight = [&](const char* what) {
        return stored(expert, ours + "moe.experts." + what, file);
      };
      // Every gate weight is multiplied by route_scale; the experts are linear in their
      // down projection, so the scale moves there.
      at::Tensor down = transposed(expert_weight("w_out"));
      if (moe.route_scale != 1.0) down = down * moe.route_scale;
      const std::string prefix = block + "experts." + std::to_string(e) + ".";
      if (mixtral) {
        t[prefix + "w1.weight"] = transposed(expert_weight("w_gate"));
        t[prefix + "w3.weight"] = transposed(expert_weight("w_up"));
        t[prefix + "w2.weight"] = down;
      } else {
        t[prefix + "gate_proj.weight"] = transposed(expert_weight("w_gate"));
        t[prefix + "up_proj.weight"] = transposed(expert_weight("w_up"));
        t[prefix + "down_proj.weight"] = down;
      }
    }
    if (!qwen2) continue;
    // Qwen2-MoE always has a shared expert, scaled by sigmoid(shared_expert_gate(x)): the
    // model's own gate (moe.shared_expert_gate), or a zero one, whose 1/2 doubling the down
    // projection undoes exactly (a power of two); without shared experts, a zero expert of
    // width 1 adds exactly nothing.
    const at::Tensor like = weight("final_norm");
    const bool gated = moe.shared_expert_gate;
    t[block + "shared_expert_gate.weight"] =
        gated ? transposed(weight(ours + "shared_gate")) : at::zeros({1, d}, like.options());
    if (moe.num_shared_experts > 0) {
      t[block + "shared_expert.gate_proj.weight"] = transposed(weight(ours + "shared.w_gate"));
      t[block + "shared_expert.up_proj.weight"] = transposed(weight(ours + "shared.w_up"));
      t[block + "shared_expert.down_proj.weight"] =
          transposed(weight(ours + "shared.w_out")) * (gated ? 1.0 : 2.0);
    } else {
      for (const char* name : {"gate_proj", "up_proj"})
        t[block + "shared_expert." + name + ".weight"] = at::zeros({1, d}, like.options());
      t[block + "shared_expert.down_proj.weight"] = at::zeros({d, 1}, like.options());
    }
  }

  nlohmann::ordered_json& j = out.config;
  j["architectures"] = {out.architecture};
  j["model_type"] = mixtral ? "mixtral" : qwen3 ? "qwen3_moe" : olmoe ? "olmoe" : "qwen2_moe";
  j["vocab_size"] = m.vocab_size;
  j["hidden_size"] = m.d_model;
  j["num_hidden_layers"] = m.n_layers;
  j["num_attention_heads"] = m.n_heads;
  j["num_key_value_heads"] = m.kv_heads();
  j["head_dim"] = m.head_width();
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = m.max_seq_len;
  j["rms_norm_eps"] = m.norm_eps;
  j["rope_theta"] = m.rope_theta;
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", m.rope_theta}};
  j["attention_dropout"] = 0.0;
  j["tie_word_embeddings"] = m.tie_embeddings;
  j["use_cache"] = true;
  j["num_experts_per_tok"] = moe.top_k;
  j["router_aux_loss_coef"] = moe.balance_loss_coef;
  j["output_router_logits"] = false;
  j["torch_dtype"] = dtype;
  j["dtype"] = dtype;
  if (mixtral) {
    j["intermediate_size"] = moe.d_expert;
    j["num_local_experts"] = moe.num_experts;
    j["router_jitter_noise"] = 0.0;
    j["sliding_window"] = nullptr;
  } else if (olmoe) {  // every block MoE; its experts' width is intermediate_size
    j["intermediate_size"] = moe.d_expert;
    j["num_experts"] = moe.num_experts;
    j["norm_topk_prob"] = renormalised;
    j["attention_bias"] = false;
    j["clip_qkv"] = nullptr;
  } else {
    j["intermediate_size"] = m.d_ff;  // the dense blocks'
    j["moe_intermediate_size"] = moe.d_expert;
    j[qwen3 ? "num_local_experts" : "num_experts"] = moe.num_experts;  // as each class saves it
    j["norm_topk_prob"] = renormalised;
    j["decoder_sparse_step"] = 1;
    j["mlp_only_layers"] = dense_layers;
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = m.n_layers;
    if (qwen3) {
      j["attention_bias"] = false;
    } else {
      j["shared_expert_intermediate_size"] =
          std::max<int64_t>(1, moe.num_shared_experts * moe.d_expert);
      j["qkv_bias"] = m.qkv_bias;
    }
  }
  j["triage_source"] = {{"checkpoint", c.folder}, {"step", c.manifest.step}};

  if (moe.route_scale != 1.0)
    out.notes.push_back("moe.route_scale " + number(moe.route_scale) +
                        " is folded into every expert's down projection");
  if (qwen2 && moe.num_shared_experts > 0 && !moe.shared_expert_gate)
    out.notes.push_back(
        "shared experts: Qwen2-MoE's shared-expert gate is zero (sigmoid 1/2) and "
        "the shared down projection is doubled");
  if (qwen2 && moe.num_shared_experts == 0)
    out.notes.push_back(
        "Qwen2-MoE always has a shared expert: written as one of width 1 with zero weights");
  if (m.num_classes > 0)
    out.notes.push_back("the classification head is not exported (--drop-class-head)");
  if (moe.eval_capacity_factor > 0)
    out.notes.push_back("transformers routes dropless; this model's eval_capacity_factor " +
                        number(moe.eval_capacity_factor) +
                        " drops assignments over capacity, which the "
                        "export does not");
  return out;
}

void cast_hf_model(HfModel& model, at::ScalarType dtype) {
  const std::string name = dtype == at::kBFloat16 ? "bfloat16"
                           : dtype == at::kDouble ? "float64"
                                                  : "float32";
  TRIAGE_ASSERT(dtype == at::kBFloat16 || dtype == at::kDouble || dtype == at::kFloat,
                "exporting as " << dtype);
  const std::string from = model.config.value("dtype", "float32");
  if (from == name) return;
  for (auto& [tensor_name, tensor] : model.tensors) tensor = tensor.to(dtype).contiguous();
  model.config["torch_dtype"] = name;
  model.config["dtype"] = name;
  if (from == "float64" || name == "bfloat16")
    model.notes.push_back("the " + from + " weights are stored as " + name +
                          " (rounded to nearest even)");
}

void write_hf_model(const HfModel& model, const std::string& out_dir, uint64_t max_shard_bytes) {
  fs::create_directories(out_dir);
  auto write = [&](const std::string& name, const std::string& bytes) {
    const std::string path = (fs::path(out_dir) / name).string();
    std::ofstream file(path, std::ios::binary);
    file.write(bytes.data(), std::streamsize(bytes.size()));
    if (!file) throw Error(path + ": cannot write");
  };
  write("config.json", model.config.dump(2) + "\n");

  // Tensors into shards in name order, a new shard when the next tensor would pass the limit.
  std::vector<TensorMap> shards(1);
  uint64_t shard_bytes = 0, total_bytes = 0;
  for (const auto& [name, tensor] : model.tensors) {
    const uint64_t bytes = uint64_t(tensor.numel()) * uint64_t(tensor.element_size());
    if (shard_bytes > 0 && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back()[name] = tensor;
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  // An earlier export into the same folder must not leave tensors the index does not name.
  for (const auto& entry : fs::directory_iterator(out_dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("model", 0) == 0 && name.find(".safetensors") != std::string::npos)
      fs::remove(entry.path());
  }
  // Each shard is streamed to its file, one tensor at a time.
  if (shards.size() == 1) {
    write_safetensors((fs::path(out_dir) / "model.safetensors").string(), shards[0], metadata);
    return;
  }
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total_bytes}};
  index["weight_map"] = nlohmann::ordered_json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    write_safetensors((fs::path(out_dir) / name).string(), shards[i], metadata);
    for (const auto& entry : shards[i]) index["weight_map"][entry.first] = name;
  }
  write("model.safetensors.index.json", index.dump(2) + "\n");
}

}  // namespace triage
