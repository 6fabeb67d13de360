// Hugging Face transformers folder -> Triage model; see the header.
// Legend: V vocabulary, D model width, H expert width, E experts, S shared width.
#include "checkpoint/hf_import.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include "checkpoint/hf_format.h"
#include "checkpoint/safetensors.h"
#include "common/error.h"
#include "common/json_number.h"
#include "model/attention.h"

namespace triage {
namespace {

namespace fs = std::filesystem;
using hf::number;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Every tensor of the folder, from model.safetensors or from the shards its index names.
TensorMap read_hf_tensors(const fs::path& dir) {
  std::set<std::string> files;
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(index)) {
    try {
      for (const auto& [name, file] :
           nlohmann::json::parse(read_text(index)).at("weight_map").items())
        files.insert(file.get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw Error(index.string() + ": expected {\"weight_map\": {tensor: file}}: " + e.what());
    }
  } else {
    files.insert("model.safetensors");
  }
  TensorMap tensors;
  for (const std::string& file : files) {
    const fs::path path = dir / file;
    TensorMap part = SafetensorsFile(path.string()).read_all();
    tensors.insert(part.begin(), part.end());
  }
  return tensors;
}

ImportedModel read_hf_model_unguarded(const std::string& dir_text) {
  const fs::path dir = dir_text, config_path = dir / "config.json";
  const std::string config_file = config_path.string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text(config_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(config_file + ": not valid JSON: " + e.what());
  }
  const std::string type = j.value("model_type", "");
  if (type != "mixtral" && type != "qwen2_moe" && type != "qwen3_moe" && type != "olmoe")
    throw Error(config_file + ": model_type \"" + type +
                "\": expected mixtral, qwen2_moe, qwen3_moe or olmoe");
  const bool mixtral = type == "mixtral", qwen2 = type == "qwen2_moe";
  const bool qwen3 = type == "qwen3_moe", olmoe = type == "olmoe";
  auto integer = [&](const char* key) {
    if (!j.contains(key)) throw Error(config_file + ": " + key + ": expected a whole number");
    return whole_number<int64_t>(j[key], config_file + ": " + key);
  };
  // An optional whole number: absent or null means `fallback`.
  auto optional_integer = [&](const char* key, int64_t fallback) {
    return !j.contains(key) || j[key].is_null() ? fallback : integer(key);
  };
  const TensorMap tensors = read_hf_tensors(dir);
  auto tensor = [&](const std::string& name) -> const at::Tensor& {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw Error(dir_text + ": missing tensor " + name);
    return it->second;
  };
  auto is_zero = [&](const std::string& name) {
    auto it = tensors.find(name);
    return it == tensors.end() || it->second.abs().max().item<double>() == 0;
  };

  const int64_t width = integer("hidden_size"), heads = integer("num_attention_heads");
  const int64_t layers = integer("num_hidden_layers");
  // (Qwen3-MoE's config saves num_experts under Mixtral's name)
  const int64_t experts = integer(
      mixtral || (qwen3 && j.contains("num_local_experts")) ? "num_local_experts" : "num_experts");
  const int64_t expert_width =
      integer(mixtral || olmoe ? "intermediate_size" : "moe_intermediate_size");
  std::vector<std::string> why;  // what Triage cannot represent
  const int64_t kv_heads = optional_integer("num_key_value_heads", heads);
  if (kv_heads <= 0 || heads % kv_heads != 0)
    why.push_back("num_key_value_heads " + std::to_string(kv_heads) + " not dividing the " +
                  std::to_string(heads) + " heads");
  // Heads of their own width (Qwen3-MoE's are wider than hidden_size / heads).
  const int64_t residual_head = heads > 0 && width % heads == 0 ? width / heads : 0;
  const int64_t head_dim = optional_integer("head_dim", residual_head);
  if (head_dim <= 0) why.push_back("no head width (head_dim, or heads dividing hidden_size)");
  if (olmoe && head_dim != residual_head)
    why.push_back("head_dim " + std::to_string(head_dim) + " x " + std::to_string(heads) +
                  " heads != hidden_size (OLMoE's query norm spans hidden_size)");
  if ((qwen3 || olmoe) && j.value("attention_bias", false))
    why.push_back("attention biases (attention_bias: true), which also bias o_proj");
  if (olmoe && j.contains("clip_qkv") && !j["clip_qkv"].is_null())
    why.push_back("clipped queries, keys and values (clip_qkv " + j["clip_qkv"].dump() + ")");
  if (integer("num_experts_per_tok") == 1 && (mixtral || j.value("norm_topk_prob", false)))
    why.push_back(
        "top-1 routing with renormalised gates (every gate weight 1; Triage keeps "
        "the raw score at top-1, so that the router learns from the task)");
  if (j.value("hidden_act", "silu") != "silu")
    why.push_back("hidden_act " + j["hidden_act"].dump() + " (SwiGLU needs silu)");
  const nlohmann::json rope = j.value("rope_parameters", nlohmann::json::object());
  const double theta = rope.value("rope_theta", j.value("rope_theta", kRopeTheta));
  if (rope.value("rope_type", "default") != "default")
    why.push_back("RoPE scaling (rope_type " + rope["rope_type"].dump() + ")");
  if (j.value("use_sliding_window", false) ||
      (optional_integer("sliding_window", 0) > 0 && mixtral))
    why.push_back("sliding-window attention");
  const nlohmann::json dense_json = j.value("mlp_only_layers", nlohmann::json::array());
  const int64_t sparse_step = optional_integer("decoder_sparse_step", 1);
  // Triage's dense blocks are the first first_dense_layers blocks.
  int64_t first_dense = 0;
  for (const auto& layer : dense_json)
    if (whole_number<int64_t>(layer, config_file + ": mlp_only_layers entry") == first_dense)
      ++first_dense;
  if (int64_t(dense_json.size()) != first_dense || sparse_step != 1)
    why.push_back("dense blocks other than the first ones (mlp_only_layers " + dense_json.dump() +
                  ", decoder_sparse_step " + std::to_string(sparse_step) + ")");

  const bool tied = j.value("tie_word_embeddings", false);
  // Qwen2-MoE's q, k and v projections have biases unless its config says qkv_bias false.
  const bool qkv_bias = qwen2 && j.value("qkv_bias", true);
  int64_t shared = 0;
  // Qwen2-MoE's shared-expert gate: kept as moe.shared_expert_gate when any block's is
  // nonzero; all zero (Triage's own exports without it), folded into the down projection.
  bool gated = false;
  for (int64_t layer = first_dense; layer < layers && qwen2; ++layer)
    gated = gated ||
            !is_zero("model.layers." + std::to_string(layer) + ".mlp.shared_expert_gate.weight");
  for (int64_t layer = 0; layer < layers && qwen2; ++layer) {
    const std::string prefix = "model.layers." + std::to_string(layer) + ".";
    if (layer < first_dense) continue;
    const bool zero_shared = is_zero(prefix + "mlp.shared_expert.down_proj.weight") &&
                             is_zero(prefix + "mlp.shared_expert.gate_proj.weight");
    const int64_t this_shared =
        zero_shared ? 0 : integer("shared_expert_intermediate_size") / expert_width;
    if (!zero_shared && this_shared * expert_width != integer("shared_expert_intermediate_size"))
      why.push_back("a shared expert whose width is not a multiple of moe_intermediate_size");
    if (layer > first_dense && this_shared != shared)
      why.push_back("shared experts in some MoE blocks only");
    shared = this_shared;
  }
  if (!why.empty()) {
    std::string text = config_file + ": Triage cannot represent this model: it has ";
    for (size_t i = 0; i < why.size(); ++i) text += (i ? "; and " : "") + why[i];
    throw Error(text);
  }

  ImportedModel out;
  const at::Tensor& embedding = tensor("model.embed_tokens.weight");
  // Half-width files are widened: Triage keeps float32 master weights, and every bf16 or
  // float16 value is a float32 value, so nothing changes on the way.
  const at::ScalarType stored = embedding.scalar_type();
  const std::string dtype = stored == at::kDouble ? "float64" : "float32";
  if (stored == at::kBFloat16 || stored == at::kHalf)
    out.notes.push_back(std::string(stored == at::kBFloat16 ? "bf16" : "float16") +
                        " weights widened to float32 master weights (exactly); on a GPU, "
                        "train.precision: bf16 computes in bf16");
  const int64_t dense_width = mixtral || olmoe ? expert_width : integer("intermediate_size");
  try {
    out.config = default_config({
        "model.vocab_size=" + std::to_string(integer("vocab_size")),
        "model.d_model=" + std::to_string(width),
        "model.n_layers=" + std::to_string(layers),
        "model.n_heads=" + std::to_string(heads),
        "model.n_kv_heads=" + std::to_string(kv_heads == heads ? 0 : kv_heads),
        "model.head_dim=" + std::to_string(head_dim == residual_head ? 0 : head_dim),
        std::string("model.qk_norm=") + (qwen3   ? "head"
                                         : olmoe ? "projection"
                                                 : "none"),
        std::string("model.qkv_bias=") + (qkv_bias ? "true" : "false"),
        "model.d_ff=" + std::to_string(dense_width),
        "model.max_seq_len=" + std::to_string(integer("max_position_embeddings")),
        "model.norm_eps=" + number(j.value("rms_norm_eps", 1e-6)),
        "model.rope_theta=" + number(theta),
        std::string("model.tie_embeddings=") + (tied ? "true" : "false"),
        "moe.num_experts=" + std::to_string(experts),
        "moe.top_k=" + std::to_string(integer("num_experts_per_tok")),
        "moe.d_expert=" + std::to_string(expert_width),
        std::string("moe.renormalize=") +
            (mixtral || j.value("norm_topk_prob", false) ? "true" : "false"),
        "moe.first_dense_layers=" + std::to_string(first_dense),
        "moe.num_shared_experts=" + std::to_string(shared),
        std::string("moe.shared_expert_gate=") + (gated && shared > 0 ? "true" : "false"),
        "train.dtype=" + dtype,
        // The default data must fit the positions; the user sets their own data anyway.
        "data.seq_len=" + std::to_string(std::min<int64_t>(Config().data.seq_len,
                                                           integer("max_position_embeddings"))),
    });
  } catch (const Error& e) {
    throw Error(config_file + ": " + e.what());
  }

  TensorMap& p = out.parameters;
  auto our_linear = [&](const std::string& name) { return hf::transposed(tensor(name)); };
  p["embedding"] = embedding;
  p["final_norm"] = tensor("model.norm.weight");
  if (!tied) p["lm_head"] = our_linear("lm_head.weight");  // (tied: the embedding is the head)
  for (int64_t layer = 0; layer < layers; ++layer) {
    const std::string ours = "layers." + std::to_string(layer) + ".";
    const std::string theirs = "model.layers." + std::to_string(layer) + ".";
    p[ours + "attention_norm"] = tensor(theirs + "input_layernorm.weight");
    p[ours + "ffn_norm"] = tensor(theirs + "post_attention_layernorm.weight");
    p[ours + "attention.w_qkv"] = at::cat({our_linear(theirs + "self_attn.q_proj.weight"),
                                           our_linear(theirs + "self_attn.k_proj.weight"),
                                           our_linear(theirs + "self_attn.v_proj.weight")},
                                          1);
    if (qkv_bias)
      p[ours + "attention.b_qkv"] = at::cat({tensor(theirs + "self_attn.q_proj.bias"),
                                             tensor(theirs + "self_attn.k_proj.bias"),
                                             tensor(theirs + "self_attn.v_proj.bias")});
    p[ours + "attention.w_out"] = our_linear(theirs + "self_attn.o_proj.weight");
    if (qwen3 || olmoe) {
      p[ours + "attention.q_norm"] = tensor(theirs + "self_attn.q_norm.weight");
      p[ours + "attention.k_norm"] = tensor(theirs + "self_attn.k_norm.weight");
    }
    if (layer < first_dense) {
      p[ours + "dense.w_gate"] = our_linear(theirs + "mlp.gate_proj.weight");
      p[ours + "dense.w_up"] = our_linear(theirs + "mlp.up_proj.weight");
      p[ours + "dense.w_out"] = our_linear(theirs + "mlp.down_proj.weight");
      continue;
    }
    const std::string block =
        theirs +
        (tensors.count(theirs + "block_sparse_moe.gate.weight") ? "block_sparse_moe." : "mlp.");
    p[ours + "moe.router.gate"] = tensor(block + "gate.weight");
    std::vector<at::Tensor> gate, up, down;
    if (tensors.count(block + "experts.gate_up_proj")) {  // transformers' fused layout
      const at::Tensor& gate_up = tensor(block + "experts.gate_up_proj");  // [E, 2H, D]
      for (int64_t e = 0; e < experts; ++e) {
        gate.push_back(gate_up[e].narrow(0, 0, expert_width).t());
        up.push_back(gate_up[e].narrow(0, expert_width, expert_width).t());
        down.push_back(tensor(block + "experts.down_proj")[e].t());
      }
    } else {
      for (int64_t e = 0; e < experts; ++e) {
        const std::string expert = block + "experts." + std::to_string(e) + ".";
        gate.push_back(our_linear(expert + (mixtral ? "w1.weight" : "gate_proj.weight")));
        up.push_back(our_linear(expert + (mixtral ? "w3.weight" : "up_proj.weight")));
        down.push_back(our_linear(expert + (mixtral ? "w2.weight" : "down_proj.weight")));
      }
    }
    p[ours + "moe.experts.w_gate"] = at::stack(gate);
    p[ours + "moe.experts.w_up"] = at::stack(up);
    p[ours + "moe.experts.w_out"] = at::stack(down);
    if (shared > 0) {
      // Ungated: the zero gate's sigmoid is 1/2 (see to_hf_model); halving is exact.
      p[ours + "shared.w_gate"] = our_linear(block + "shared_expert.gate_proj.weight");
      p[ours + "shared.w_up"] = our_linear(block + "shared_expert.up_proj.weight");
      p[ours + "shared.w_out"] =
          our_linear(block + "shared_expert.down_proj.weight") * (gated ? 1.0 : 0.5);
      if (gated) p[ours + "shared_gate"] = our_linear(block + "shared_expert_gate.weight");
    }
  }
  if (qwen2 && shared > 0 && !gated)
    out.notes.push_back(
        "the shared experts' zero gate (sigmoid 1/2) is folded into their down projection");
  return out;
}

}  // namespace

ImportedModel read_hf_model(const std::string& dir) {
  try {
    return read_hf_model_unguarded(dir);
  } catch (const nlohmann::json::exception& e) {
    // A key of an unexpected JSON type (a string where a number belongs, ...).
    throw Error((fs::path(dir) / "config.json").string() + ": unexpected value (" + e.what() + ")");
  }
}

}  // namespace triage
