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

TEST(Safetensors, StoresBf16AsTheFormatsBf16BitPatterns) {
  // 1.5 is 0x3FC0 in bfloat16 (float32 0x3FC00000's upper half); -2 is 0xC000.
  const at::Tensor x = doubles({1.5, -2.0}, {2}).to(at::kBFloat16);
  const std::string bytes = encode_safetensors({{"x", x}});
  uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  EXPECT_EQ(nlohmann::json::parse(bytes.substr(8, length))["x"]["dtype"], "BF16");
  const std::string data = bytes.substr(8 + length);
  EXPECT_EQ(data, std::string("\xC0\x3F\x00\xC0", 4));
  const TensorMap back = decode_safetensors(bytes, "b.safetensors");
  EXPECT_EQ(back.at("x").scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(back.at("x"), x));
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

TEST(Safetensors, RefusesTensorDataThatLeavesAGap) {
  const std::string bytes =
      file_with_header(R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}})", 4);
  EXPECT_EQ(error_of([&] { decode_safetensors(bytes, "e.safetensors"); }),
            "e.safetensors: tensor data leaves a gap at data offset 0");
}

TEST(Safetensors, RefusesBytesAfterTheLastTensor) {
  const std::string bytes =
      file_with_header(R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})", 3);
  EXPECT_EQ(error_of([&] { decode_safetensors(bytes, "e.safetensors"); }),
            "e.safetensors: 1 bytes after the last tensor; expected none");
}

// The CRC-32 check value of the standard (ITU-T V.42, zlib): "123456789" -> 0xCBF43926.
TEST(Crc32, GivesTheStandardCheckValue) {
  Crc32 crc;
  crc.update("123456789", 9);
  EXPECT_EQ(crc.value(), 0xCBF43926u);
}

// A file past 4 GiB is checksummed in pieces (zlib takes at most 2^32 - 1 bytes a call).
// Pieces of 4 bytes over 9 stand in for pieces of 1 GiB over 68 GB: every byte counts, so
// the value is the whole span's, where one truncated call would cover only `size mod 2^32`.
TEST(Crc32, CoversEveryByteOfASpanLongerThanOnePiece) {
  Crc32 pieces(/*max_piece=*/4);
  pieces.update("123456789", 9);
  EXPECT_EQ(pieces.value(), 0xCBF43926u);
  Crc32 split(4);
  split.update("12345", 5);
  split.update("6789", 4);
  EXPECT_EQ(split.value(), 0xCBF43926u);
}

TEST(SafetensorsFile, StreamedFileEqualsTheInMemoryFormatAndReadsBackBitwise) {
  at::Generator gen = generator(5);
  const TensorMap tensors = {{"w", at::randn({3, 5}, gen, at::kDouble)},
                             {"empty", at::zeros({0, 4}, at::kFloat)},
                             {"ids", longs({4, -2, 9}, {3})}};
  const std::string path = write_temp_file("streamed.safetensors", "");
  const FileDigest digest = write_safetensors(path, tensors);
  const std::string bytes = encode_safetensors(tensors);
  EXPECT_EQ(digest.bytes, bytes.size());
  Crc32 crc;
  crc.update(bytes.data(), bytes.size());
  EXPECT_EQ(digest.crc32, crc.value());
  const SafetensorsFile file(path, digest);
  for (const auto& [name, tensor] : tensors) {
    EXPECT_TRUE(at::equal(file.read(name), tensor)) << name;
    at::Tensor in_place = at::empty_like(tensor);
    file.read_into(name, in_place);
    EXPECT_TRUE(at::equal(in_place, tensor)) << name;
  }
}

TEST(SafetensorsFile, RefusesAFileWhoseChecksumDiffersFromTheManifest) {
  const std::string path = write_temp_file("corrupt.safetensors", "");
  FileDigest digest = write_safetensors(path, {{"x", doubles({1, 2, 3, 4}, {4})}});
  digest.crc32 ^= 1u;
  EXPECT_EQ(error_of([&] { SafetensorsFile(path, digest); }),
            path + ": checksum mismatch: the file is corrupt");
  digest.bytes += 8;
  EXPECT_EQ(error_of([&] { SafetensorsFile(path, digest); }),
            path + ": truncated or overwritten: " + std::to_string(digest.bytes - 8) +
                " bytes, the manifest says " + std::to_string(digest.bytes));
}

}  // namespace
}  // namespace triage
