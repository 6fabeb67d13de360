// Loads and validates the YAML config. Every message is one line of the form
// "<file>:<line>: <section.key> = <value>: expected <what>" so a user can fix it at once.
#include "config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

#include "common/error.h"

namespace triage {
namespace {

std::string format_real(double value) {
  std::ostringstream out;
  out.precision(12);
  out << value;
  return out.str();
}

std::string describe(const IntRange& r) {
  constexpr auto kMin = std::numeric_limits<int64_t>::min();
  constexpr auto kMax = std::numeric_limits<int64_t>::max();
  if (r.min != kMin && r.max != kMax)
    return "an integer in [" + std::to_string(r.min) + ", " + std::to_string(r.max) + "]";
  if (r.min != kMin) return "an integer >= " + std::to_string(r.min);
  return "an integer";
}

std::string describe(const RealRange& r) {
  std::string text = "a number in ";
  text += r.min_exclusive ? "(" : "[";
  text += format_real(r.min) + ", " + format_real(r.max);
  text += r.max_exclusive ? ")" : "]";
  return text;
}

std::string describe(const AnyString&) { return "a string"; }

const char* const kRoutingOverrideForms =
    "none, balanced, hot:E:F (F in [0, 1]), zipf:S (S > 0), empty_rank:R or replay:RUN_DIR";
std::string describe(const RoutingRule&) { return kRoutingOverrideForms; }

std::string describe(const AnyBool&) { return "true or false"; }
std::string describe(const CountOrWord& c) { return describe(c.range) + " or " + c.word; }

bool allows(const IntRange& r, int64_t v) { return v >= r.min && v <= r.max; }
bool allows(const RealRange& r, double v) {
  if (!std::isfinite(v)) return false;
  bool above = r.min_exclusive ? v > r.min : v >= r.min;
  bool below = r.max_exclusive ? v < r.max : v <= r.max;
  return above && below;
}
bool allows(const AnyString&, const std::string&) { return true; }
bool allows(const RoutingRule&, const RoutingOverride&) { return true; }  // parsed, so valid
template <class E>
bool allows(const OneOf&, E) {
  return true;  // parse_scalar accepted a name of E
}

// What a field expects, for messages; an enum field lists its names.
template <class Field, class Constraint>
std::string expectation(const Field&, const Constraint& constraint) {
  if constexpr (std::is_enum_v<Field>)
    return choice_list<Field>();
  else
    return describe(constraint);
}
bool allows(const AnyBool&, bool) { return true; }
bool allows(const CountOrWord& c, int64_t v) { return v == -1 || allows(c.range, v); }

std::string format_value(int64_t v) { return std::to_string(v); }
std::string format_value(double v) { return format_real(v); }
std::string format_value(bool v) { return v ? "true" : "false"; }
std::string format_value(const std::string& v) { return v.empty() ? "\"\"" : v; }
std::string format_value(const RoutingOverride& v) { return v.text; }
template <class E, class = decltype(ChoiceNames<E>::names)>
std::string format_value(E v) {
  return name_of(v);
}
// A field as the config file writes it (auto for an automatic count).
template <class Field, class Constraint>
std::string format_field(const Field& v, const Constraint&) {
  return format_value(v);
}
std::string format_field(int64_t v, const CountOrWord& c) {
  return v == -1 ? c.word : format_value(v);
}

// How a scalar was written, for quoting it back in a message.
std::string written(const YAML::Node& node) {
  if (node.IsScalar()) return node.Scalar().empty() ? "\"\"" : node.Scalar();
  if (node.IsNull()) return "(empty)";
  return node.IsMap() ? "(a mapping)" : "(a list)";
}

[[noreturn]] void fail(const std::string& where, const std::string& key, const std::string& value,
                       const std::string& expected) {
  throw Error(where + ": " + key + " = " + value + ": expected " + expected);
}

// Parses `node` into a field of type T (an enum field from one of its names); false when it
// is not a T at all.
template <class T>
bool parse_scalar(const YAML::Node& node, T& out) {
  if (!node.IsScalar()) return false;
  if constexpr (std::is_enum_v<T>) {
    const std::optional<T> choice = choice_named<T>(node.Scalar());
    if (choice) out = *choice;
    return bool(choice);
  } else {
    try {
      out = node.as<T>();
      return true;
    } catch (const YAML::Exception&) {
      return false;
    }
  }
}
bool parse_scalar(const YAML::Node& node, std::string& out) {
  if (node.IsNull()) {
    out.clear();
    return true;
  }
  if (!node.IsScalar()) return false;
  out = node.Scalar();
  return true;
}

template <class Field, class Constraint>
bool parse_field(const YAML::Node& node, Field& out, const Constraint&) {
  return parse_scalar(node, out);
}
bool parse_field(const YAML::Node& node, RoutingOverride& out, const RoutingRule&) {
  std::string text;
  if (!parse_scalar(node, text)) return false;
  try {
    out = parse_routing_override(text);
    return true;
  } catch (const Error&) {
    return false;
  }
}
bool parse_field(const YAML::Node& node, int64_t& out, const CountOrWord& c) {
  if (node.IsScalar() && node.Scalar() == c.word) {
    out = -1;
    return true;
  }
  return parse_scalar(node, out);
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// "; did you mean X?" for a near miss, else the list of valid names.
std::string suggest(const std::string& wrong, const std::vector<std::string>& valid,
                    const std::string& prefix) {
  std::string best;
  size_t best_distance = 3;  // beyond two edits a guess is noise
  for (const auto& name : valid) {
    size_t d = edit_distance(wrong, name);
    if (d < best_distance) best_distance = d, best = name;
  }
  if (!best.empty()) return "did you mean " + prefix + best + "?";
  std::string text = "expected one of ";
  for (size_t i = 0; i < valid.size(); ++i) text += (i ? ", " : "") + prefix + valid[i];
  return text;
}

template <class Section>
std::vector<std::string> field_names(Section& section) {
  std::vector<std::string> names;
  visit_fields(section, [&](const char* name, auto&, const auto&) { names.push_back(name); });
  return names;
}

std::vector<std::string> section_names(Config& config) {
  std::vector<std::string> names;
  visit_sections(config, [&](const char* name, auto&) { names.push_back(name); });
  return names;
}

// Throws unless `name` is one of the five sections.
void require_section(Config& config, const std::string& name, const std::string& where) {
  auto names = section_names(config);
  if (std::find(names.begin(), names.end(), name) == names.end())
    throw Error(where + ": unknown section " + name + "; " + suggest(name, names, ""));
}

// Sets section.key from `node`; `where` locates it for messages.
void assign(Config& config, const std::string& section_name, const std::string& key,
            const YAML::Node& node, const std::string& where) {
  require_section(config, section_name, where);
  visit_sections(config, [&](const char* name, auto& section) {
    if (section_name != name) return;
    bool key_found = false;
    const std::string full_key = section_name + "." + key;
    visit_fields(section, [&](const char* field_name, auto& field, const auto& constraint) {
      if (key != field_name) return;
      key_found = true;
      std::remove_reference_t<decltype(field)> parsed{};
      if (!parse_field(node, parsed, constraint) || !allows(constraint, parsed))
        fail(where, full_key, written(node), expectation(parsed, constraint));
      field = parsed;
    });
    if (!key_found)
      throw Error(where + ": unknown key " + full_key + "; " +
                  suggest(key, field_names(section), section_name + "."));
    config.origin[full_key] = where;
  });
}

std::string origin_of(const Config& config, const std::string& key) {
  auto it = config.origin.find(key);
  return it == config.origin.end() ? "(default)" : it->second;
}

// Rules that involve two keys; the message points at the first key's origin.
void validate(const Config& c) {
  auto check = [&](bool ok, const std::string& key, const std::string& value,
                   const std::string& expected) {
    if (!ok) fail(origin_of(c, key), key, value, expected);
  };
  const RoutingOverride& routing = c.moe.routing_override;
  check(routing.kind != RoutingOverride::Kind::kHot || routing.expert < c.moe.num_experts,
        "moe.routing_override", c.moe.routing_override.text,
        "a hot expert below moe.num_experts (" + std::to_string(c.moe.num_experts) + ")");
  const int64_t per_rank = c.moe.num_experts / std::max<int64_t>(1, c.parallel.expert);
  check(routing.kind != RoutingOverride::Kind::kEmptyRank ||
            (routing.rank < c.parallel.expert && c.moe.top_k <= c.moe.num_experts - per_rank),
        "moe.routing_override", c.moe.routing_override.text,
        "an EP rank below parallel.expert (" + std::to_string(c.parallel.expert) +
            ") whose removal leaves at least moe.top_k experts");
  check(c.moe.max_receive_factor == 0 || c.moe.max_receive_factor >= 1, "moe.max_receive_factor",
        format_value(c.moe.max_receive_factor), "0 (unbounded) or at least 1 (the balanced share)");
  check(c.moe.top_k <= c.moe.num_experts, "moe.top_k", format_value(c.moe.top_k),
        "at most moe.num_experts (" + std::to_string(c.moe.num_experts) + ")");
  check(c.moe.num_groups != kGroupsByHost, "moe.num_groups", "hosts",
        "parallel.ranks_per_host stated (the EP ranks each host runs: a divisor of "
        "parallel.expert = " +
            std::to_string(c.parallel.expert) + ", or at least it; got " +
            std::to_string(c.parallel.ranks_per_host) + ")");
  check(c.moe.exchange != Exchange::kHierarchical || c.moe.dispatch != Dispatch::kPerChoice,
        "moe.dispatch", format_value(c.moe.dispatch),
        "per_rank or auto when moe.exchange is hierarchical (it sends one row per token and "
        "host, then per token and rank)");
  if (c.moe.topk_groups > 0) {
    const int64_t groups = c.moe.num_groups;  // resolved: never 0 here
    check(c.moe.num_experts % groups == 0, "moe.num_groups", format_value(c.moe.num_groups),
          "a divisor of moe.num_experts (" + std::to_string(c.moe.num_experts) + ")");
    check(c.moe.topk_groups <= groups, "moe.topk_groups", format_value(c.moe.topk_groups),
          "at most the number of groups (" + std::to_string(groups) + ")");
    check(c.moe.top_k <= c.moe.topk_groups * (c.moe.num_experts / groups), "moe.top_k",
          format_value(c.moe.top_k),
          "at most the experts in moe.topk_groups groups (" +
              std::to_string(c.moe.topk_groups * (c.moe.num_experts / groups)) + ")");
  }
  const bool lookahead =
      c.moe.routing_level == RoutingLevel::kSequence || c.moe.router == RouterKind::kExpertChoice;
  check(!lookahead || c.train.loss == Loss::kClassify || c.moe.allow_lookahead,
        c.moe.routing_level == RoutingLevel::kSequence ? "moe.routing_level" : "moe.router",
        c.moe.routing_level == RoutingLevel::kSequence ? format_value(c.moe.routing_level)
                                                       : format_value(c.moe.router),
        "train.loss classify: a token's experts then depend on later tokens, which a causal "
        "LM loss can read; set moe.allow_lookahead: true to accept a non-causal LM loss");
  check(c.moe.routing_level == RoutingLevel::kToken ||
            c.moe.balance_loss_scope == BalanceLossScope::kBatch,
        "moe.balance_loss_scope", format_value(c.moe.balance_loss_scope),
        "batch when moe.routing_level is sequence (a sequence makes one choice)");
  check(c.moe.router == RouterKind::kTokenChoice ||
            (c.moe.topk_groups == 0 && !c.moe.expert_bias &&
             c.moe.routing_override.kind == RoutingOverride::Kind::kNone &&
             c.moe.max_receive_factor == 0),
        "moe.router", format_value(c.moe.router),
        "token_choice when moe.topk_groups, moe.expert_bias, moe.routing_override or "
        "moe.max_receive_factor is set (they shape the tokens' choices)");
  check((c.moe.noise == RouterNoise::kJitter) == (c.moe.jitter_noise > 0), "moe.jitter_noise",
        format_value(c.moe.jitter_noise),
        c.moe.noise == RouterNoise::kJitter ? "more than 0 when moe.noise is jitter"
                                            : "0 unless moe.noise is jitter");
  check(c.moe.balance_loss_type == BalanceLossType::kSwitch ||
            (c.moe.noise == RouterNoise::kShazeer && c.moe.router == RouterKind::kTokenChoice &&
             c.moe.balance_loss_scope == BalanceLossScope::kBatch),
        "moe.balance_loss_type", format_value(c.moe.balance_loss_type),
        "switch unless moe.noise is shazeer with token_choice and a batch-scope loss (the "
        "load estimate is the noise's)");
  check(c.train.early_stop_patience == 0 ||
            (c.train.keep_best != KeepBest::kNone && c.train.eval_every > 0),
        "train.early_stop_patience", format_value(c.train.early_stop_patience),
        "0 unless train.keep_best names the figure to watch and train.eval_every > 0");
  check(c.train.keep_best == KeepBest::kNone || c.data.test_fraction > 0, "train.keep_best",
        format_value(c.train.keep_best), "none when data.test_fraction is 0 (nothing is held out)");
  check(c.model.head_dim > 0 || c.model.d_model % c.model.n_heads == 0, "model.n_heads",
        format_value(c.model.n_heads),
        "a divisor of model.d_model (" + std::to_string(c.model.d_model) +
            "), or a model.head_dim set");
  check(c.model.n_heads % c.model.kv_heads() == 0, "model.n_kv_heads",
        format_value(c.model.n_kv_heads),
        "0 or a divisor of model.n_heads (" + std::to_string(c.model.n_heads) + ")");
  check(c.model.positions != Positions::kRotary || c.model.head_width() % 2 == 0, "model.positions",
        format_value(c.model.positions),
        "learned, since rotary needs an even head width (" +
            std::string(c.model.head_dim > 0 ? "model.head_dim" : "d_model / n_heads") + " = " +
            std::to_string(c.model.head_width()) + ")");
  check(c.moe.num_experts % c.parallel.expert == 0, "parallel.expert",
        format_value(c.parallel.expert),
        "a divisor of moe.num_experts (" + std::to_string(c.moe.num_experts) + ")");
  check(c.train.warmup_steps <= c.train.steps, "train.warmup_steps",
        format_value(c.train.warmup_steps),
        "at most train.steps (" + std::to_string(c.train.steps) + ")");
  check(c.data.seq_len <= c.model.max_seq_len, "data.seq_len", format_value(c.data.seq_len),
        "at most model.max_seq_len (" + std::to_string(c.model.max_seq_len) + ")");
  check(c.data.kind == DataKind::kSynthetic || !c.data.path.empty(), "data.path", "\"\"",
        "a file path when data.kind is " + name_of(c.data.kind));
  check(!c.moe.shared_expert_gate || c.moe.num_shared_experts > 0, "moe.shared_expert_gate",
        format_value(c.moe.shared_expert_gate), "false when moe.num_shared_experts is 0");
  check(c.moe.first_dense_layers <= c.model.n_layers, "moe.first_dense_layers",
        format_value(c.moe.first_dense_layers),
        "at most model.n_layers (" + std::to_string(c.model.n_layers) + ")");
  check(c.train.precision != Precision::kBf16 || c.train.device == DeviceKind::kCuda,
        "train.precision", format_value(c.train.precision),
        "fp32 when train.device is cpu (bf16 autocast is the GPU path)");
  check(c.train.precision != Precision::kBf16 || c.train.dtype == DType::kFloat32,
        "train.precision", format_value(c.train.precision), "fp32 when train.dtype is float64");
  const bool classify = c.train.loss != Loss::kLm;
  check(!classify || c.model.num_classes != 0, "model.num_classes",
        format_value(c.model.num_classes),
        "at least 1, or auto, when train.loss is " + name_of(c.train.loss));
  const bool unlabelled = c.data.kind == DataKind::kText || c.data.kind == DataKind::kTokens;
  check(!classify || !unlabelled, "train.loss", format_value(c.train.loss),
        "lm when data.kind is " + name_of(c.data.kind) + " (it has no labels)");
  // A token file states its vocabulary; the trainer checks it against model.vocab_size.
  if (c.data.kind != DataKind::kTokens) {
    const bool text = c.data.kind == DataKind::kText;
    const int64_t min_vocab = text ? kByteVocabSize : kAminoAcidVocabSize;
    check(c.model.vocab_size >= min_vocab, "model.vocab_size", format_value(c.model.vocab_size),
          "at least " + std::to_string(min_vocab) + " for data.kind " + name_of(c.data.kind) +
              (text ? " (one id per byte)" : " (20 residues + 4 specials)"));
  }
  if (!c.data.label_pattern.empty()) {
    size_t groups = 0;
    try {
      groups = std::regex(c.data.label_pattern).mark_count();
    } catch (const std::regex_error& e) {
      fail(origin_of(c, "data.label_pattern"), "data.label_pattern", c.data.label_pattern,
           std::string("a valid regular expression (") + e.what() + ")");
    }
    check(groups >= 1, "data.label_pattern", c.data.label_pattern,
          "a regular expression with a capture group, e.g. ^([A-Za-z0-9]+)_");
  }
}

void apply_overrides(Config& config, const std::vector<std::string>& overrides) {
  for (const auto& text : overrides) {
    const std::string where = "--set " + text;
    auto equals = text.find('=');
    auto dot = text.find('.');
    if (equals == std::string::npos || dot == std::string::npos || dot > equals)
      throw Error(where + ": expected section.key=value, e.g. moe.top_k=2");
    YAML::Node value;
    try {
      value = YAML::Load(text.substr(equals + 1));
    } catch (const YAML::Exception& e) {
      throw Error(where + ": value is not valid YAML: " + e.msg);
    }
    assign(config, text.substr(0, dot), text.substr(dot + 1, equals - dot - 1), value, where);
  }
}

}  // namespace

RoutingOverride::RoutingOverride(const std::string& text)
    : RoutingOverride(parse_routing_override(text)) {}

RoutingOverride parse_routing_override(const std::string& text) {
  static const std::regex kHot(R"(hot:(\d+):([0-9.eE+-]+))"), kZipf(R"(zipf:([0-9.eE+-]+))"),
      kEmptyRank(R"(empty_rank:(\d+))"), kReplay(R"(replay:(.+))");
  const std::string expected = kRoutingOverrideForms;
  RoutingOverride r;
  r.text = text;
  std::smatch m;
  auto number = [&](const std::string& s) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      throw Error(expected);
    }
    if (used != s.size() || !std::isfinite(v)) throw Error(expected);
    return v;
  };
  auto integer = [&](const std::string& s) {
    if (s.size() > 9) throw Error(expected);
    return int64_t(std::stoll(s));
  };
  if (text == "none") return r;
  if (text == "balanced") {
    r.kind = RoutingOverride::Kind::kBalanced;
  } else if (std::regex_match(text, m, kHot)) {
    r.kind = RoutingOverride::Kind::kHot;
    r.expert = integer(m[1]);
    r.fraction = number(m[2]);
    if (r.fraction < 0 || r.fraction > 1) throw Error(expected);
  } else if (std::regex_match(text, m, kZipf)) {
    r.kind = RoutingOverride::Kind::kZipf;
    r.exponent = number(m[1]);
    if (r.exponent <= 0 || r.exponent > 100) throw Error(expected);
  } else if (std::regex_match(text, m, kEmptyRank)) {
    r.kind = RoutingOverride::Kind::kEmptyRank;
    r.rank = integer(m[1]);
  } else if (std::regex_match(text, m, kReplay)) {
    r.kind = RoutingOverride::Kind::kReplay;
    r.run_dir = m[1];
  } else {
    throw Error(expected);
  }
  return r;
}

// num_groups 0 or hosts becomes a number once, here: one group per EP rank, or per host of
// the EP group, of the stated layout (hosts without a stated parallel.ranks_per_host that
// fits stays unresolved, for validate to name).
void resolve_num_groups(Config& c) {
  if (c.moe.topk_groups > 0 && c.moe.num_groups == 0) c.moe.num_groups = c.parallel.expert;
  const int64_t per_host = c.parallel.ranks_per_host;
  if (c.moe.num_groups == kGroupsByHost && per_host > 0 &&
      (per_host >= c.parallel.expert || c.parallel.expert % per_host == 0))
    c.moe.num_groups = std::max<int64_t>(1, c.parallel.expert / per_host);
}

Config default_config(const std::vector<std::string>& overrides) {
  Config config;
  apply_overrides(config, overrides);
  resolve_num_groups(config);
  validate(config);
  return config;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored))
    throw Error(path + ": is a directory; expected a YAML config file");
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw Error(path + ": cannot open the config file");
  } catch (const YAML::Exception& e) {
    throw Error(path + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
  }
  Config config;
  auto line_of = [&](const YAML::Node& node) {
    return path + ":" + std::to_string(node.Mark().line + 1);
  };
  if (!root.IsNull() && !root.IsMap())
    throw Error(line_of(root) +
                ": expected a mapping of sections (model, moe, parallel, train, data)");
  // Keys must be plain names: YAML also allows a mapping or a list as a key ("? a: 1"),
  // which no config key is (found by fuzzing: it escaped as a conversion exception).
  auto name_of = [&](const YAML::Node& key) {
    if (!key.IsScalar())
      throw Error(line_of(key) + ": found " + written(key) + " as a key; expected a key name");
    return key.Scalar();
  };
  std::set<std::string> seen;
  for (const auto& section : root) {
    const std::string section_name = name_of(section.first);
    if (!section.second.IsMap() && !section.second.IsNull())
      throw Error(line_of(section.first) + ": section " + section_name + " = " +
                  written(section.second) + ": expected a mapping of key: value");
    require_section(config, section_name, line_of(section.first));
    if (!seen.insert(section_name).second)
      throw Error(line_of(section.first) + ": section " + section_name + " appears twice");
    if (section.second.IsNull()) continue;  // an empty section keeps its defaults
    for (const auto& entry : section.second) {
      const std::string key = name_of(entry.first);
      const std::string full_key = section_name + "." + key;
      if (!seen.insert(full_key).second)
        throw Error(line_of(entry.first) + ": key " + full_key + " appears twice");
      assign(config, section_name, key, entry.second, line_of(entry.first));
    }
  }
  apply_overrides(config, overrides);
  resolve_num_groups(config);
  validate(config);
  return config;
}

std::vector<ConfigRow> config_rows(const Config& const_config) {
  Config config = const_config;  // visitors take mutable sections; this copy is read only
  std::vector<ConfigRow> rows;
  visit_sections(config, [&](const char* section_name, auto& section) {
    visit_fields(section, [&](const char* name, auto& field, const auto& constraint) {
      std::string key = std::string(section_name) + "." + name;
      rows.push_back({key, format_field(field, constraint), origin_of(config, key)});
    });
  });
  return rows;
}

}  // namespace triage
