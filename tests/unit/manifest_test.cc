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

}  // namespace
}  // namespace triage
