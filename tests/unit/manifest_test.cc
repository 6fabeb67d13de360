// The checkpoint manifest parser: a valid manifest reads back its fields; numbers that are
// not whole numbers in range are refused with one line (found by fuzz_checkpoint).
#include <gtest/gtest.h>

#include "checkpoint/manifest.h"
#include "common/error.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;

std::string manifest_with_bytes(const std::string& bytes) {
  return R"({"format": "triage-checkpoint-1", "num_experts": 4, "dtype": "float32", "step": 8,
             "samples_seen": 64, "optimizer_step": 8, "run_id": "abc",
             "files": {"replicated.safetensors": {"bytes": )" +
         bytes + R"(, "crc32": 7}}})";
}

const Config& four_experts() {
  static const Config config = default_config({"moe.num_experts=4"});
  return config;
}

TEST(Manifest, ValidManifestReadsBackItsFields) {
  CheckpointManifest m = parse_manifest(manifest_with_bytes("1000"), "m.json", four_experts());
  EXPECT_EQ(m.step, 8);
  EXPECT_EQ(m.samples_seen, 64);
  EXPECT_EQ(m.run_id, "abc");
  ASSERT_EQ(m.files.count("replicated.safetensors"), 1u);
  EXPECT_EQ(m.files["replicated.safetensors"].bytes, 1000u);
  EXPECT_EQ(m.files["replicated.safetensors"].crc32, 7u);
}

TEST(Manifest, FractionalOrHugeSizesAreRefusedWithOneLine) {
  for (const char* bad : {"2.01e+62", "20160.5", "-1"}) {
    const std::string message =
        error_of([&] { parse_manifest(manifest_with_bytes(bad), "m.json", four_experts()); });
    EXPECT_NE(message.find("m.json replicated.safetensors: bytes = "), std::string::npos)
        << bad << ": " << message;
    EXPECT_NE(message.find("expected a whole number in range"), std::string::npos) << message;
  }
}

// A manifest of a model saved with these config rows (the keys routing depends on).
std::string manifest_with_config(const std::string& rows) {
  return R"({"format": "triage-checkpoint-1", "num_experts": 8, "dtype": "float32", "step": 8,
             "samples_seen": 64, "optimizer_step": 8, "files": {}, "config": {)" +
         rows + "}}";
}

TEST(Manifest, ResumeThatWouldRouteWithinOtherGroupsIsRefused) {
  const Config two_groups = default_config(
      {"moe.num_experts=8", "moe.topk_groups=2", "moe.num_groups=2", "parallel.expert=2"});
  const std::string saved = manifest_with_config(
      R"("moe.topk_groups": "2", "moe.num_groups": "4", "parallel.expert": "4")");
  EXPECT_EQ(error_of([&] { parse_manifest(saved, "m.json", two_groups); }),
            "m.json: the model routes each token within the best 2 of 4 expert groups; this run "
            "would route within no group limit (moe.topk_groups, moe.num_groups); set them to 2 "
            "and 4 to continue this model");
}

TEST(Manifest, OlderCheckpointsNumGroupsZeroMeansTheirOwnExpertParallelSize) {
  const Config four_groups = default_config(
      {"moe.num_experts=8", "moe.topk_groups=2", "moe.num_groups=4", "parallel.expert=1"});
  const std::string saved = manifest_with_config(
      R"("moe.topk_groups": "2", "moe.num_groups": "0", "parallel.expert": "4")");
  EXPECT_EQ(parse_manifest(saved, "m.json", four_groups).step, 8);
}

// Expert choice within 2 slices (trained on 2 EP groups) resumed where the run would make 1.
TEST(Manifest, ResumeThatWouldCutExpertChoiceIntoOtherSlicesIsRefused) {
  const Config one_slice =
      default_config({"moe.num_experts=8", "moe.router=expert_choice", "moe.allow_lookahead=true",
                      "moe.expert_choice_slices=1"});
  const std::string saved = manifest_with_config(R"("moe.expert_choice_slices": "2")");
  EXPECT_EQ(error_of([&] { parse_manifest(saved, "m.json", one_slice); }),
            "m.json: the model's experts choose within 2 slice(s) of each batch; this run would "
            "cut it into 1 (moe.expert_choice_slices); set it to 2 to continue this model");
  EXPECT_EQ(parse_manifest(manifest_with_config(R"("moe.expert_choice_slices": "1")"), "m.json",
                           one_slice)
                .step,
            8);
}

}  // namespace
}  // namespace triage
