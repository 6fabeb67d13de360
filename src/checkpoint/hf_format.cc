// Triage checkpoint -> Hugging Face transformers layout; see the header.
// Legend: V vocabulary, D model width, H expert width, E experts, S shared width.
#include "checkpoint/hf_format.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/json_number.h"
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

std::string number(double value) {
  std::ostringstream text;
  text << value;
  return text.str();
}

// Triage keeps weights as [in, out] (x @ w); transformers' nn.Linear keeps [out, in].
at::Tensor linear(const at::Tensor& w_in_out) { return w_in_out.t().contiguous(); }

// What no supported class can represent; empty when the model is exportable.
std::vector<std::string> unrepresentable(const CheckpointContents& c, bool drop_class_head) {
  const Config& config = c.config;
  std::vector<std::string> why;
  if (config.model.positions != Positions::kRotary)
    why.push_back(
        "learned absolute positions (model.positions: " + name_of(config.model.positions) +
        "), where Mixtral and Qwen2-MoE use rotary positions");
  if (config.moe.expert_type != ExpertType::kSwiglu)
    why.push_back("GELU experts and dense blocks (moe.expert_type: " +
                  name_of(config.moe.expert_type) + "), where both classes use SwiGLU");
  if (config.moe.score_function != ScoreFunction::kSoftmax)
    why.push_back(
        "sigmoid router scores (moe.score_function: " + name_of(config.moe.score_function) +
        "), where both classes use a softmax (transformers' sigmoid-routed class, "
        "DeepSeek-V3, has multi-head latent attention, which this model does not)");
  if (config.moe.routing_level != RoutingLevel::kToken)
    why.push_back("sequence-level routing (moe.routing_level: " +
                  name_of(config.moe.routing_level) + "), where both classes route each token");
  if (config.moe.router != RouterKind::kTokenChoice)
    why.push_back("expert-choice routing (moe.router: " + name_of(config.moe.router) +
                  "), where both classes let each token choose its top-k");
  if (config.moe.topk_groups > 0 && config.moe.topk_groups < config.moe.num_groups)
    why.push_back(
        "group-limited routing (moe.topk_groups: " + std::to_string(config.moe.topk_groups) +
        " of " + std::to_string(config.moe.num_groups) +
        " groups), which neither class's router has (each picks its top-k among all "
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
          std::to_string(moe - 1) + "), which neither class's router has");
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
  const bool mixtral = dense_layers.empty() && moe.num_shared_experts == 0 && renormalised;

  HfModel out;
  out.architecture = mixtral ? "MixtralForCausalLM" : "Qwen2MoeForCausalLM";
  const std::string dtype = c.manifest.dtype;
  const std::string replicated = c.folder + "/replicated.safetensors";
  auto weight = [&](const std::string& name) { return stored(c.replicated, name, replicated); };
  TensorMap& t = out.tensors;
  t["model.embed_tokens.weight"] = weight("embedding").contiguous();
  t["model.norm.weight"] = weight("final_norm");
  t["lm_head.weight"] = linear(weight("lm_head"));

  const int64_t d = m.d_model;
  for (int64_t layer = 0; layer < m.n_layers; ++layer) {
    const std::string ours = "layers." + std::to_string(layer) + ".";
    const std::string theirs = "model.layers." + std::to_string(layer) + ".";
    t[theirs + "input_layernorm.weight"] = weight(ours + "attention_norm");
    t[theirs + "post_attention_layernorm.weight"] = weight(ours + "ffn_norm");
    // w_qkv's columns are [q | k | v], each head-major: the layout of q_proj, k_proj, v_proj.
    const at::Tensor qkv = weight(ours + "attention.w_qkv");
    const char* projections[3] = {"q_proj", "k_proj", "v_proj"};
    for (int64_t part = 0; part < 3; ++part)
      t[theirs + "self_attn." + projections[part] + ".weight"] = linear(qkv.narrow(1, part * d, d));
    t[theirs + "self_attn.o_proj.weight"] = linear(weight(ours + "attention.w_out"));

    if (!is_moe_block(moe, layer)) {
      t[theirs + "mlp.gate_proj.weight"] = linear(weight(ours + "dense.w_gate"));
      t[theirs + "mlp.up_proj.weight"] = linear(weight(ours + "dense.w_up"));
      t[theirs + "mlp.down_proj.weight"] = linear(weight(ours + "dense.w_out"));
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
      at::Tensor down = linear(expert_weight("w_out"));
      if (moe.route_scale != 1.0) down = down * moe.route_scale;
      const std::string prefix = block + "experts." + std::to_string(e) + ".";
      if (mixtral) {
        t[prefix + "w1.weight"] = linear(expert_weight("w_gate"));
        t[prefix + "w3.weight"] = linear(expert_weight("w_up"));
        t[prefix + "w2.weight"] = down;
      } else {
        t[prefix + "gate_proj.weight"] = linear(expert_weight("w_gate"));
        t[prefix + "up_proj.weight"] = linear(expert_weight("w_up"));
        t[prefix + "down_proj.weight"] = down;
      }
    }
    if (mixtral) continue;
    // Qwen2-MoE always has a shared expert, scaled by sigmoid(shared_expert_gate(x)). A zero
    // gate makes that 1/2, which doubling the down projection undoes exactly (a power of
    // two); without shared experts, a zero expert of width 1 adds exactly nothing.
    const at::Tensor like = weight("final_norm");
    t[block + "shared_expert_gate.weight"] = at::zeros({1, d}, like.options());
    if (moe.num_shared_experts > 0) {
      t[block + "shared_expert.gate_proj.weight"] = linear(weight(ours + "shared.w_gate"));
      t[block + "shared_expert.up_proj.weight"] = linear(weight(ours + "shared.w_up"));
      t[block + "shared_expert.down_proj.weight"] = linear(weight(ours + "shared.w_out")) * 2.0;
    } else {
      for (const char* name : {"gate_proj", "up_proj"})
        t[block + "shared_expert." + name + ".weight"] = at::zeros({1, d}, like.options());
      t[block + "shared_expert.down_proj.weight"] = at::zeros({d, 1}, like.options());
    }
  }

  nlohmann::ordered_json& j = out.config;
  j["architectures"] = {out.architecture};
  j["model_type"] = mixtral ? "mixtral" : "qwen2_moe";
  j["vocab_size"] = m.vocab_size;
  j["hidden_size"] = m.d_model;
  j["num_hidden_layers"] = m.n_layers;
  j["num_attention_heads"] = m.n_heads;
  j["num_key_value_heads"] = m.n_heads;
  j["head_dim"] = m.d_model / m.n_heads;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = m.max_seq_len;
  j["rms_norm_eps"] = m.norm_eps;
  j["rope_theta"] = 10000.0;
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}};
  j["attention_dropout"] = 0.0;
  j["tie_word_embeddings"] = false;
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
  } else {
    j["intermediate_size"] = m.d_ff;  // the dense blocks'
    j["moe_intermediate_size"] = moe.d_expert;
    j["shared_expert_intermediate_size"] =
        std::max<int64_t>(1, moe.num_shared_experts * moe.d_expert);
    j["num_experts"] = moe.num_experts;
    j["norm_topk_prob"] = renormalised;
    j["decoder_sparse_step"] = 1;
    j["mlp_only_layers"] = dense_layers;
    j["qkv_bias"] = false;
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = m.n_layers;
  }
  j["triage_source"] = {{"checkpoint", c.folder}, {"step", c.manifest.step}};

  if (moe.route_scale != 1.0)
    out.notes.push_back("moe.route_scale " + number(moe.route_scale) +
                        " is folded into every expert's down projection");
  if (!mixtral && moe.num_shared_experts > 0)
    out.notes.push_back(
        "shared experts: Qwen2-MoE's shared-expert gate is zero (sigmoid 1/2) and "
        "the shared down projection is doubled");
  if (!mixtral && moe.num_shared_experts == 0)
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

namespace triage {
namespace {

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
  if (type != "mixtral" && type != "qwen2_moe")
    throw Error(config_file + ": model_type \"" + type + "\": expected mixtral or qwen2_moe");
  const bool mixtral = type == "mixtral";
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
  const int64_t experts = integer(mixtral ? "num_local_experts" : "num_experts");
  const int64_t expert_width = integer(mixtral ? "intermediate_size" : "moe_intermediate_size");
  std::vector<std::string> why;  // what Triage cannot represent
  const int64_t kv_heads = optional_integer("num_key_value_heads", heads);
  if (kv_heads != heads)
    why.push_back("grouped-query attention (num_key_value_heads " + std::to_string(kv_heads) +
                  " of " + std::to_string(heads) + " heads)");
  // Divided, not multiplied: a damaged head_dim must not overflow.
  if (j.contains("head_dim") && !j["head_dim"].is_null() &&
      (heads <= 0 || width % heads != 0 || optional_integer("head_dim", 0) != width / heads))
    why.push_back("head_dim x heads != hidden_size");
  if (integer("num_experts_per_tok") == 1 && (mixtral || j.value("norm_topk_prob", false)))
    why.push_back(
        "top-1 routing with renormalised gates (every gate weight 1; Triage keeps "
        "the raw score at top-1, so that the router learns from the task)");
  if (j.value("hidden_act", "silu") != "silu")
    why.push_back("hidden_act " + j["hidden_act"].dump() + " (SwiGLU needs silu)");
  const nlohmann::json rope = j.value("rope_parameters", nlohmann::json::object());
  const double theta = rope.value("rope_theta", j.value("rope_theta", 10000.0));
  if (theta != 10000.0 || rope.value("rope_type", "default") != "default")
    why.push_back("RoPE other than theta 10000 without scaling (theta " + number(theta) + ")");
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

  int64_t shared = 0;
  for (int64_t layer = 0; layer < layers && !mixtral; ++layer) {
    const std::string prefix = "model.layers." + std::to_string(layer) + ".";
    for (const char* bias : {"q_proj", "k_proj", "v_proj"})
      if (!is_zero(prefix + "self_attn." + bias + ".bias")) {
        why.push_back("attention biases (" + prefix + "self_attn." + bias + ".bias)");
        break;
      }
    if (layer < first_dense) continue;
    if (!is_zero(prefix + "mlp.shared_expert_gate.weight")) {
      why.push_back("a per-token sigmoid gate on the shared expert (" + prefix +
                    "mlp.shared_expert_gate.weight)");
      break;
    }
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
  const std::string dtype = embedding.scalar_type() == at::kDouble ? "float64" : "float32";
  const int64_t dense_width = mixtral ? expert_width : integer("intermediate_size");
  try {
    out.config = default_config({
        "model.vocab_size=" + std::to_string(integer("vocab_size")),
        "model.d_model=" + std::to_string(width),
        "model.n_layers=" + std::to_string(layers),
        "model.n_heads=" + std::to_string(heads),
        "model.d_ff=" + std::to_string(dense_width),
        "model.max_seq_len=" + std::to_string(integer("max_position_embeddings")),
        "model.norm_eps=" + number(j.value("rms_norm_eps", 1e-6)),
        "moe.num_experts=" + std::to_string(experts),
        "moe.top_k=" + std::to_string(integer("num_experts_per_tok")),
        "moe.d_expert=" + std::to_string(expert_width),
        std::string("moe.renormalize=") +
            (mixtral || j.value("norm_topk_prob", false) ? "true" : "false"),
        "moe.first_dense_layers=" + std::to_string(first_dense),
        "moe.num_shared_experts=" + std::to_string(shared),
        "train.dtype=" + dtype,
        // The default data must fit the positions; the user sets their own data anyway.
        "data.seq_len=" + std::to_string(std::min<int64_t>(Config().data.seq_len,
                                                           integer("max_position_embeddings"))),
    });
  } catch (const Error& e) {
    throw Error(config_file + ": " + e.what());
  }

  TensorMap& p = out.parameters;
  auto our_linear = [&](const std::string& name) { return tensor(name).t().contiguous(); };
  p["embedding"] = embedding;
  p["final_norm"] = tensor("model.norm.weight");
  if (tensors.count("lm_head.weight")) {
    p["lm_head"] = our_linear("lm_head.weight");
  } else {
    p["lm_head"] = embedding.t().contiguous();
    out.notes.push_back(
        "tied embeddings: the LM head starts as a copy of the embedding and trains on its own");
  }
  for (int64_t layer = 0; layer < layers; ++layer) {
    const std::string ours = "layers." + std::to_string(layer) + ".";
    const std::string theirs = "model.layers." + std::to_string(layer) + ".";
    p[ours + "attention_norm"] = tensor(theirs + "input_layernorm.weight");
    p[ours + "ffn_norm"] = tensor(theirs + "post_attention_layernorm.weight");
    p[ours + "attention.w_qkv"] = at::cat({our_linear(theirs + "self_attn.q_proj.weight"),
                                           our_linear(theirs + "self_attn.k_proj.weight"),
                                           our_linear(theirs + "self_attn.v_proj.weight")},
                                          1);
    p[ours + "attention.w_out"] = our_linear(theirs + "self_attn.o_proj.weight");
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
      // The zero gate's sigmoid is 1/2 (see to_hf_model); halving is exact.
      p[ours + "shared.w_gate"] = our_linear(block + "shared_expert.gate_proj.weight");
      p[ours + "shared.w_up"] = our_linear(block + "shared_expert.up_proj.weight");
      p[ours + "shared.w_out"] = our_linear(block + "shared_expert.down_proj.weight") * 0.5;
    }
  }
  if (!mixtral && shared > 0)
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
