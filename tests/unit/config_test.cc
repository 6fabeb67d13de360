// Config loading: defaults, overrides, origins, and one precise message per kind of mistake.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "common/error.h"
#include "config/config.h"
#include "test_support.h"

namespace triage {
namespace {

// Writes `text` to a fresh file in the test temp dir and returns its path.
using namespace testing_support;

std::string write_config(const std::string& name, const std::string& text) {
  return write_temp_file(name, text);
}

// The message load_config throws, or "" if it loads.
std::string load_error(const std::string& path, const std::vector<std::string>& sets = {}) {
  return error_of([&] { load_config(path, sets); });
}

TEST(Config, DefaultsMatchTheDocumentedValues) {
  Config c = default_config();
  EXPECT_EQ(c.moe.num_experts, 8);
  EXPECT_EQ(c.moe.top_k, 2);
  EXPECT_EQ(c.moe.score_function, ScoreFunction::kSoftmax);
  EXPECT_DOUBLE_EQ(c.moe.capacity_factor, 0.0);
  EXPECT_EQ(c.parallel.expert, 1);
  EXPECT_EQ(c.train.dtype, DType::kFloat32);
}

TEST(Config, ReferenceFileListsEveryKeyWithItsDefault) {
  Config from_file = load_config(TRIAGE_SOURCE_DIR "/configs/reference.yaml");
  std::vector<ConfigRow> file_rows = config_rows(from_file);
  std::vector<ConfigRow> default_rows = config_rows(default_config());
  ASSERT_EQ(file_rows.size(), default_rows.size());
  for (size_t i = 0; i < file_rows.size(); ++i) {
    EXPECT_EQ(file_rows[i].value, default_rows[i].value) << file_rows[i].key;
    EXPECT_NE(file_rows[i].origin, "(default)")
        << file_rows[i].key << " missing from reference.yaml";
  }
}

TEST(Config, FileValuesOverrideDefaultsAndRecordTheirLine) {
  auto path = write_config("good.yaml", "moe:\n  num_experts: 16\n  top_k: 4\n");
  Config c = load_config(path);
  EXPECT_EQ(c.moe.num_experts, 16);
  EXPECT_EQ(c.moe.top_k, 4);
  EXPECT_EQ(c.origin.at("moe.top_k"), path + ":3");
  EXPECT_EQ(c.origin.count("moe.d_expert"), 0u);
}

TEST(Config, SetOverridesWinOverTheFileInOrder) {
  auto path = write_config("set.yaml", "moe:\n  top_k: 1\n");
  Config c = load_config(path, {"moe.top_k=2", "moe.score_function=sigmoid", "moe.top_k=3"});
  EXPECT_EQ(c.moe.top_k, 3);
  EXPECT_EQ(c.moe.score_function, ScoreFunction::kSigmoid);
  EXPECT_EQ(c.origin.at("moe.top_k"), "--set moe.top_k=3");
}

TEST(Config, EmptyFileMeansAllDefaults) {
  auto path = write_config("empty.yaml", "");
  for (const ConfigRow& row : config_rows(load_config(path)))
    EXPECT_EQ(row.origin, "(default)") << row.key;
  EXPECT_EQ(load_config(path).moe.top_k, 2);
}

TEST(Config, NamedChoicesAreReadOnceIntoEnumsAndPrintedBackByName) {
  auto path =
      write_config("choices.yaml", "train:\n  loss: lm+classify\nmodel:\n  num_classes: 3\n");
  const Config c = load_config(path, {"moe.drop_policy=score"});
  EXPECT_EQ(c.train.loss, Loss::kLmAndClassify);
  EXPECT_EQ(c.moe.drop_policy, DropPolicy::kScore);
  std::map<std::string, std::string> printed;
  for (const ConfigRow& row : config_rows(c)) printed[row.key] = row.value;
  EXPECT_EQ(printed.at("train.loss"), "lm+classify");
  EXPECT_EQ(printed.at("moe.drop_policy"), "score");
  EXPECT_EQ(printed.at("train.dtype"), "float32");
}

TEST(Config, NumClassesAutoIsReadAndPrintedAsAuto) {
  auto path = write_config("auto.yaml", "model:\n  num_classes: auto\ntrain:\n  loss: classify\n");
  const Config c = load_config(path);
  EXPECT_EQ(c.model.num_classes, kAutoClasses);
  for (const ConfigRow& row : config_rows(c))
    if (row.key == "model.num_classes") EXPECT_EQ(row.value, "auto");
}

TEST(Config, BooleansAcceptYamlSpellings) {
  auto path = write_config("bool.yaml", "moe:\n  expert_bias: yes\n  renormalize: off\n");
  Config c = load_config(path);
  EXPECT_TRUE(c.moe.expert_bias);
  EXPECT_FALSE(c.moe.renormalize);
}

// One bad config each: the file body (or --set) and the exact one-line message expected.
struct BadConfig {
  std::string name;
  std::string body;
  std::vector<std::string> sets;
  std::string expected;  // "{}" stands for the file's path
};

// Names the case in test output instead of dumping its bytes.
void PrintTo(const BadConfig& bad, std::ostream* out) { *out << bad.name; }

class BadConfigTest : public testing::TestWithParam<BadConfig> {};

TEST_P(BadConfigTest, IsRefusedWithOneLineNamingFileKeyValueAndExpectation) {
  const BadConfig& bad = GetParam();
  auto path = write_config(bad.name + ".yaml", bad.body);
  std::string expected = bad.expected;
  for (auto at = expected.find("{}"); at != std::string::npos; at = expected.find("{}"))
    expected.replace(at, 2, path);
  std::string message = load_error(path, bad.sets);
  EXPECT_EQ(message, expected);
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Config, BadConfigTest,
    testing::Values(
        BadConfig{"UnknownKeySuggestsNearMiss",
                  "moe:\n  num_experts: 4\n  topk: 2\n",
                  {},
                  "{}:3: unknown key moe.topk; did you mean moe.top_k?"},
        BadConfig{"UnknownSectionListsSections",
                  "optimizer:\n  lr: 1\n",
                  {},
                  "{}:1: unknown section optimizer; expected one of model, moe, parallel, "
                  "train, data"},
        BadConfig{"WordWhereIntegerExpected",
                  "moe:\n  top_k: two\n",
                  {},
                  "{}:2: moe.top_k = two: expected an integer in [1, 65536]"},
        BadConfig{"FractionWhereIntegerExpected",
                  "model:\n  d_model: 64.5\n",
                  {},
                  "{}:2: model.d_model = 64.5: expected an integer in [1, 65536]"},
        BadConfig{"NumGroupsHostsWithoutRanksPerHost",
                  "moe:\n  num_experts: 8\n  num_groups: hosts\n  topk_groups: 1\nparallel:\n  "
                  "expert: 4\n",
                  {},
                  "{}:3: moe.num_groups = hosts: expected parallel.ranks_per_host stated (the EP "
                  "ranks each host runs: a divisor of parallel.expert = 4, or at least it; got "
                  "0)"},
        BadConfig{"NumGroupsHostsWithRanksPerHostNotDividingTheGroup",
                  "moe:\n  num_experts: 12\n  num_groups: hosts\n  topk_groups: 1\nparallel:\n  "
                  "expert: 6\n  ranks_per_host: 4\n",
                  {},
                  "{}:3: moe.num_groups = hosts: expected parallel.ranks_per_host stated (the EP "
                  "ranks each host runs: a divisor of parallel.expert = 6, or at least it; got "
                  "4)"},
        BadConfig{"NumGroupsNeitherCountNorHosts",
                  "moe:\n  num_groups: nodes\n",
                  {},
                  "{}:2: moe.num_groups = nodes: expected an integer in [0, 65536] or hosts"},
        BadConfig{"HierarchicalExchangeWithPerChoiceDispatch",
                  "moe:\n  exchange: hierarchical\n  dispatch: per_choice\n",
                  {},
                  "{}:3: moe.dispatch = per_choice: expected per_rank or auto when moe.exchange "
                  "is hierarchical (it sends one row per token and host, then per token and "
                  "rank)"},
        BadConfig{"UnknownExchange",
                  "moe:\n  exchange: 2d\n",
                  {},
                  "{}:2: moe.exchange = 2d: expected one of auto, flat, hierarchical"},
        BadConfig{"ZeroExperts",
                  "moe:\n  num_experts: 0\n",
                  {},
                  "{}:2: moe.num_experts = 0: expected an integer in [1, 65536]"},
        BadConfig{"UnknownScoreFunction",
                  "moe:\n  score_function: softplus\n",
                  {},
                  "{}:2: moe.score_function = softplus: expected one of softmax, sigmoid"},
        BadConfig{"NotABoolean",
                  "moe:\n  renormalize: maybe\n",
                  {},
                  "{}:2: moe.renormalize = maybe: expected true or false"},
        BadConfig{"NegativeCapacityFactor",
                  "moe:\n  capacity_factor: -1.5\n",
                  {},
                  "{}:2: moe.capacity_factor = -1.5: expected a number in [0, 1000000]"},
        BadConfig{"NotANumberJitter",
                  "moe:\n  jitter_noise: .nan\n",
                  {},
                  "{}:2: moe.jitter_noise = .nan: expected a number in [0, 1)"},
        BadConfig{"NumClassesNeitherACountNorAuto",
                  "model:\n  num_classes: many\n",
                  {},
                  "{}:2: model.num_classes = many: expected an integer in [0, 1048576] or auto"},
        BadConfig{"TopKAboveNumExperts",
                  "moe:\n  num_experts: 4\n  top_k: 5\n",
                  {},
                  "{}:3: moe.top_k = 5: expected at most moe.num_experts (4)"},
        BadConfig{"HeadsNotDividingWidth",
                  "model:\n  d_model: 64\n  n_heads: 5\n",
                  {},
                  "{}:3: model.n_heads = 5: expected a divisor of model.d_model (64), or a "
                  "model.head_dim "
                  "set"},
        BadConfig{"KeyValueHeadsNotDividingHeads",
                  "model:\n  n_heads: 4\n  n_kv_heads: 3\n",
                  {},
                  "{}:3: model.n_kv_heads = 3: expected 0 or a divisor of model.n_heads (4)"},
        BadConfig{"RotaryWithOddHeadWidth",
                  "model:\n  d_model: 12\n  n_heads: 4\n  positions: rotary\n",
                  {},
                  "{}:4: model.positions = rotary: expected learned, since rotary needs an "
                  "even head width (d_model / n_heads = 3)"},
        BadConfig{"ExpertParallelNotDividingExperts",
                  "parallel:\n  expert: 3\n",
                  {},
                  "{}:2: parallel.expert = 3: expected a divisor of moe.num_experts (8)"},
        BadConfig{"WarmupLongerThanTraining",
                  "train:\n  steps: 10\n  warmup_steps: 20\n",
                  {},
                  "{}:3: train.warmup_steps = 20: expected at most train.steps (10)"},
        BadConfig{"SequenceLongerThanPositions",
                  "model:\n  max_seq_len: 32\ndata:\n  seq_len: 64\n",
                  {},
                  "{}:4: data.seq_len = 64: expected at most model.max_seq_len (32)"},
        BadConfig{"FileKindWithoutPath",
                  "data:\n  kind: proteins\n",
                  {},
                  "(default): data.path = \"\": expected a file path when data.kind is proteins"},
        BadConfig{"DuplicateKey",
                  "moe:\n  top_k: 1\n  top_k: 2\n",
                  {},
                  "{}:3: key moe.top_k appears twice"},
        BadConfig{"SectionIsNotAMapping",
                  "moe: 3\n",
                  {},
                  "{}:1: section moe = 3: expected a mapping of key: value"},
        BadConfig{"TopLevelIsAList",
                  "- moe\n- model\n",
                  {},
                  "{}:1: expected a mapping of sections (model, moe, parallel, train, data)"},
        BadConfig{"YamlSyntaxError",
                  "moe:\n  top_k: [1, 2\n",
                  {},
                  "{}:3: not valid YAML: end of sequence flow not found"},
        BadConfig{"SetWithoutEquals",
                  "",
                  {"moe.top_k"},
                  "--set moe.top_k: expected section.key=value, e.g. moe.top_k=2"},
        BadConfig{"SetWithWrongType",
                  "",
                  {"train.lr=fast"},
                  "--set train.lr=fast: train.lr = fast: expected a number in (0, 10]"},
        BadConfig{"SetUnknownKey",
                  "",
                  {"train.learning_rate=0.1"},
                  "--set train.learning_rate=0.1: unknown key train.learning_rate; expected one "
                  "of train.seed, train.dtype, train.device, train.precision, train.steps, "
                  "train.batch_size, train.lr, "
                  "train.warmup_steps, train.min_lr_ratio, train.weight_decay, train.grad_clip, "
                  "train.eval_every, train.log_every, train.loss, train.grad_accum_steps, "
                  "train.checkpoint_every, train.keep_checkpoints, train.keep_best, "
                  "train.early_stop_patience, "
                  "train.collective_timeout_s, train.overlap_grad_sync, train.grad_bucket_mb, "
                  "train.shard_optimizer, "
                  "train.grad_reduce_dtype, train.recompute"},
        BadConfig{"MappingAsKey",  // found by fuzz_config
                  "moe:\n? top_k: 4\ntrain:\ns steps: 3\n",
                  {},
                  "{}:2: found (a mapping) as a key; expected a key name"},
        BadConfig{
            "UnknownRoutingOverride",
            "moe:\n  routing_override: skewed\n",
            {},
            "{}:2: moe.routing_override = skewed: expected none, balanced, hot:E:F (F in [0, 1]), "
            "zipf:S (S > 0), empty_rank:R or replay:RUN_DIR"},
        BadConfig{
            "HotFractionAboveOne",
            "",
            {"moe.routing_override=hot:0:1.5"},
            "--set moe.routing_override=hot:0:1.5: moe.routing_override = hot:0:1.5: expected "
            "none, "
            "balanced, hot:E:F (F in [0, 1]), zipf:S (S > 0), empty_rank:R or replay:RUN_DIR"},
        BadConfig{"HotExpertBeyondExperts",
                  "moe:\n  num_experts: 4\n  routing_override: hot:4:0.5\n",
                  {},
                  "{}:3: moe.routing_override = hot:4:0.5: expected a hot expert below "
                  "moe.num_experts (4)"},
        BadConfig{"EmptyRankBeyondExpertParallel",
                  "moe:\n  routing_override: empty_rank:2\nparallel:\n  expert: 2\n",
                  {},
                  "{}:2: moe.routing_override = empty_rank:2: expected an EP rank below "
                  "parallel.expert (2) "
                  "whose removal leaves at least moe.top_k experts"},
        BadConfig{"ReceiveFactorBelowOne",
                  "moe:\n  max_receive_factor: 0.5\n",
                  {},
                  "{}:2: moe.max_receive_factor = 0.5: expected 0 (unbounded) or at least 1 (the "
                  "balanced share)"},
        BadConfig{"CollectiveTimeoutZero",
                  "train:\n  collective_timeout_s: 0\n",
                  {},
                  "{}:2: train.collective_timeout_s = 0: expected a number in (0, 10000000]"},
        BadConfig{"SequenceRoutingWithACausalLmLoss",
                  "moe:\n  routing_level: sequence\n",
                  {},
                  "{}:2: moe.routing_level = sequence: expected train.loss classify: a token's "
                  "experts then depend on later tokens, which a causal LM loss can read; set "
                  "moe.allow_lookahead: true to accept a non-causal LM loss"},
        BadConfig{"ExpertChoiceWithACausalLmLoss",
                  "moe:\n  router: expert_choice\n",
                  {},
                  "{}:2: moe.router = expert_choice: expected train.loss classify: a token's "
                  "experts then depend on later tokens, which a causal LM loss can read; set "
                  "moe.allow_lookahead: true to accept a non-causal LM loss"},
        BadConfig{"JitterAmountWithoutJitterNoise",
                  "moe:\n  jitter_noise: 0.1\n",
                  {},
                  "{}:2: moe.jitter_noise = 0.1: expected 0 unless moe.noise is jitter"},
        BadConfig{"CvSquaredLossWithoutShazeerNoise",
                  "moe:\n  balance_loss_type: cv_squared\n",
                  {},
                  "{}:2: moe.balance_loss_type = cv_squared: expected switch unless moe.noise is "
                  "shazeer with token_choice and a batch-scope loss (the load estimate is the "
                  "noise's)"},
        BadConfig{"SetMakesTopKInconsistent",
                  "moe:\n  num_experts: 4\n",
                  {"moe.top_k=8"},
                  "--set moe.top_k=8: moe.top_k = 8: expected at most moe.num_experts (4)"}),
    [](const testing::TestParamInfo<BadConfig>& info) { return info.param.name; });

// A model's routing is fixed when its config is read: num_groups 0 becomes the stated EP
// size, so a tool or resume at another layout routes within the same groups.
TEST(Config, NumGroupsZeroIsResolvedToTheStatedExpertParallelSize) {
  const std::string path = write_config(
      "groups.yaml", "moe:\n  num_experts: 8\n  topk_groups: 2\nparallel:\n  expert: 4\n");
  EXPECT_EQ(load_config(path).moe.num_groups, 4);
  // At another EP size the recorded number stands (the checkpoint's config rows say 4).
  EXPECT_EQ(default_config(
                {"moe.num_experts=8", "moe.topk_groups=2", "moe.num_groups=4", "parallel.expert=2"})
                .moe.num_groups,
            4);
}

// Node-limited routing: num_groups hosts becomes the EP group's hosts under the stated
// ranks per host (8 EP ranks, 2 a host: 4 groups of 16 / 4 = 4 experts), and one group when
// a host holds the whole EP group.
TEST(Config, NumGroupsHostsIsResolvedToTheStatedHostsOfTheExpertParallelGroup) {
  const std::string path = write_config(
      "hosts.yaml",
      "moe:\n  num_experts: 16\n  num_groups: hosts\n  topk_groups: 2\nparallel:\n  expert: 8\n"
      "  ranks_per_host: 2\n");
  EXPECT_EQ(load_config(path).moe.num_groups, 4);
  for (const char* per_host : {"parallel.ranks_per_host=8", "parallel.ranks_per_host=16"})
    EXPECT_EQ(load_config(path, {per_host, "moe.topk_groups=1"}).moe.num_groups, 1) << per_host;
}

TEST(Config, MissingFileIsNamed) {
  EXPECT_EQ(load_error("/nonexistent/triage.yaml"),
            "/nonexistent/triage.yaml: cannot open the config file");
}

}  // namespace
}  // namespace triage
