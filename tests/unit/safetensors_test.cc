// Checkpoint tensor files: exact round trip, the published layout, refusal of damage.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "checkpoint/safetensors.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;

TEST(Safetensors, RoundTripIsBitwiseExact) {
  at::Generator gen = generator(3);
  TensorMap tensors = {{"w", at::randn({3, 5}, gen, at::kDouble)},
                       {"f", at::randn({7}, gen, at::kFloat)},
                       {"ids", longs({4, -2, 9}, {3})},
                       {"rng", at::arange(10, at::kByte)}};
  TensorMap back = decode_safetensors(encode_safetensors(tensors), "t.safetensors");
  ASSERT_EQ(back.size(), tensors.size());
  for (const auto& [name, tensor] : tensors) EXPECT_TRUE(at::equal(back.at(name), tensor)) << name;
}

TEST(Safetensors, WritesALittleEndianHeaderLengthThenJsonThenData) {
  const std::string bytes = encode_safetensors({{"x", doubles({1.5, -2.0}, {2})}});
  uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  EXPECT_EQ(length % 8, 0u);
  auto header = nlohmann::json::parse(bytes.substr(8, length));
  EXPECT_EQ(header["x"]["dtype"], "F64");
  EXPECT_EQ(header["x"]["shape"], nlohmann::json({2}));
  EXPECT_EQ(header["x"]["data_offsets"], nlohmann::json({0, 16}));
  EXPECT_EQ(bytes.size(), 8 + length + 16);
  double first = 0;
  std::memcpy(&first, bytes.data() + 8 + length, sizeof first);
  EXPECT_EQ(first, 1.5);
}

TEST(Safetensors, RefusesATruncatedFileNamingIt) {
  std::string bytes = encode_safetensors({{"x", doubles({1, 2, 3, 4}, {4})}});
  bytes.resize(bytes.size() - 8);
  EXPECT_EQ(error_of([&] { decode_safetensors(bytes, "ck/expert-00001.safetensors"); }),
            "ck/expert-00001.safetensors: tensor x: data_offsets do not fit its shape or the file");
}

TEST(Safetensors, RefusesAFileTooShortForAHeader) {
  EXPECT_EQ(error_of([] { decode_safetensors("abc", "f"); }), "f: 3 bytes; not a tensor file");
}

// A file with the header `header_json` and `data_bytes` zero bytes after it.
std::string file_with_header(const std::string& header_json, size_t data_bytes) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = char((uint64_t(header_json.size()) >> (8 * i)) & 0xff);
  return bytes + header_json + std::string(data_bytes, '\0');
}

TEST(Safetensors, RefusesAFractionalSizeInAShapeNamingTheTensor) {
  // 2e62 converted to an integer by a plain cast is undefined behaviour (found by the fuzzer).
  const std::string bytes =
      file_with_header(R"({"w": {"dtype": "F32", "shape": [2e62], "data_offsets": [0, 8]}})", 8);
  EXPECT_EQ(error_of([&] { decode_safetensors(bytes, "e.safetensors"); }),
            "e.safetensors: tensor w: shape entry = 2e+62; expected a whole number in range");
}

TEST(Safetensors, RefusesANegativeSizeInAShape) {
  const std::string bytes =
      file_with_header(R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8);
  EXPECT_EQ(error_of([&] { decode_safetensors(bytes, "e.safetensors"); }),
            "e.safetensors: tensor w: negative size in shape [-2]");
}

TEST(Safetensors, RefusesAShapeLargerThanTheFileBeforeAllocatingIt) {
  // 2^31 x 2^31 floats would be 16 EiB; the product must not overflow either.
  const std::string bytes = file_with_header(
      R"({"w": {"dtype": "F32", "shape": [2147483648, 2147483648, 4], "data_offsets": [0, 8]}})",
      8);
  EXPECT_EQ(error_of([&] { decode_safetensors(bytes, "e.safetensors"); }),
            "e.safetensors: tensor w: data_offsets do not fit its shape or the file");
}

TEST(Safetensors, RefusesANegativeDataOffset) {
  const std::string bytes =
      file_with_header(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", 8);
  EXPECT_EQ(error_of([&] { decode_safetensors(bytes, "e.safetensors"); }),
            "e.safetensors: tensor w: data_offsets = -8; expected a whole number in range");
}

TEST(Safetensors, ReadsAnEmptyTensorWhateverItsOtherSizes) {
  const std::string bytes = file_with_header(
      R"({"w": {"dtype": "F32", "shape": [9223372036854775807, 0], "data_offsets": [0, 0]}})", 0);
  EXPECT_EQ(decode_safetensors(bytes, "e.safetensors").at("w").numel(), 0);
}

}  // namespace
}  // namespace triage
