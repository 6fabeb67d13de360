// The safetensors layout with nlohmann::json for the header. One header writer and one
// header parser serve both the streamed files and the in-memory form.
#include "checkpoint/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "common/json_number.h"

namespace triage {

namespace {

const std::map<at::ScalarType, std::string>& dtype_names() {
  static const std::map<at::ScalarType, std::string> names = {
      {at::kFloat, "F32"}, {at::kDouble, "F64"}, {at::kBFloat16, "BF16"},
      {at::kHalf, "F16"},  {at::kLong, "I64"},   {at::kByte, "U8"}};
  return names;
}

at::ScalarType dtype_of(const std::string& name, const std::string& where) {
  for (const auto& [type, text] : dtype_names())
    if (text == name) return type;
  throw Error(where + ": unsupported dtype " + name + "; expected F32, F64, BF16, F16, I64 or U8");
}

uint64_t byte_count(const at::Tensor& t) { return uint64_t(t.numel()) * t.element_size(); }

// The length prefix and padded JSON header of `tensors`, in the map's (name) order, which is
// also the order their bytes follow in.
std::string header_of(const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    auto dtype = dtype_names().find(tensor.scalar_type());
    TRIAGE_ASSERT(dtype != dtype_names().end(),
                  "cannot store " << name << " of " << tensor.scalar_type());
    const uint64_t bytes = byte_count(tensor);
    header[name] = {{"dtype", dtype->second},
                    {"shape", tensor.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the format pads the header to 8 bytes
  std::string out(8, '\0');
  const uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((length >> (8 * i)) & 0xff);
  return out + text;
}

// Calls `sink(data, bytes)` with the header, then each tensor's bytes; one tensor at a time
// is copied to the CPU (or made contiguous) when it is not already.
template <class Sink>
void emit(const TensorMap& tensors, const std::map<std::string, std::string>& metadata,
          Sink&& sink) {
  const std::string header = header_of(tensors, metadata);
  sink(header.data(), header.size());
  for (const auto& [name, tensor] : tensors) {
    const at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    if (byte_count(t) > 0) sink(t.data_ptr(), byte_count(t));
  }
}

// The header's length from the file's first 8 bytes, checked against the file's size.
uint64_t header_length(const char first8[8], uint64_t file_size, const std::string& path) {
  if (file_size < 8)
    throw Error(path + ": " + std::to_string(file_size) + " bytes; not a tensor file");
  uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= uint64_t(uint8_t(first8[i])) << (8 * i);
  if (length > file_size - 8)
    throw Error(path + ": header length " + std::to_string(length) + " exceeds the file");
  return length;
}

// The header's entries, each checked against the data section's size before anything is
// allocated, so that a damaged size cannot ask for more memory than the file could hold.
std::map<std::string, SafetensorsFile::Entry> parse_header(const std::string& text,
                                                           uint64_t data_size,
                                                           const std::string& path) {
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": header is not valid JSON (" + e.what() + ")");
  }
  if (!header.is_object()) throw Error(path + ": header is not a JSON object");
  std::map<std::string, SafetensorsFile::Entry> entries;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string where = path + ": tensor " + name;
    try {
      SafetensorsFile::Entry e;
      e.dtype = dtype_of(entry.at("dtype").get<std::string>(), where);
      const nlohmann::json& shape_json = entry.at("shape");
      const nlohmann::json& offsets_json = entry.at("data_offsets");
      if (!shape_json.is_array() || !offsets_json.is_array() || offsets_json.size() != 2)
        throw Error(where + ": expected shape [sizes] and data_offsets [begin, end]");
      uint64_t want = uint64_t(at::elementSize(e.dtype));
      for (const nlohmann::json& size : shape_json) {
        e.shape.push_back(whole_number<int64_t>(size, where + ": shape entry"));
        if (e.shape.back() < 0)
          throw Error(where + ": negative size in shape " + shape_json.dump());
        if (e.shape.back() != 0 && want > data_size / uint64_t(e.shape.back()))
          want = data_size + 1;  // more than the file holds, without overflowing
        else
          want *= uint64_t(e.shape.back());
      }
      e.begin = whole_number<uint64_t>(offsets_json[0], where + ": data_offsets");
      e.end = whole_number<uint64_t>(offsets_json[1], where + ": data_offsets");
      if (e.end < e.begin || e.end - e.begin != want || e.end > data_size)
        throw Error(where + ": data_offsets do not fit its shape or the file");
      entries[name] = e;
    } catch (const nlohmann::json::exception& e) {
      throw Error(where + ": malformed entry (" + e.what() + ")");
    }
  }
  // The tensors must tile the data section, as the format's reference reader requires.
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const auto& [name, e] : entries)
    if (e.end > e.begin) spans.push_back({e.begin, e.end});
  std::sort(spans.begin(), spans.end());
  uint64_t covered = 0;
  for (const auto& [begin, end] : spans) {
    if (begin != covered)
      throw Error(path + ": tensor data " + (begin < covered ? "overlaps" : "leaves a gap") +
                  " at data offset " + std::to_string(std::min(begin, covered)));
    covered = end;
  }
  if (covered != data_size)
    throw Error(path + ": " + std::to_string(data_size - covered) +
                " bytes after the last tensor; expected none");
  return entries;
}

// An empty tensor of `e`'s shape and dtype; LibTorch's refusals become one line.
at::Tensor empty_for(const SafetensorsFile::Entry& e, const std::string& where) {
  try {
    return at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
  } catch (const c10::Error& error) {
    throw Error(where + ": " + error.what_without_backtrace());
  }
}

}  // namespace

FileDigest write_safetensors(const std::string& path, const TensorMap& tensors,
                             const std::map<std::string, std::string>& metadata) {
  DurableWriter writer(path);
  emit(tensors, metadata, [&](const void* data, uint64_t bytes) { writer.write(data, bytes); });
  return writer.finish();
}

SafetensorsFile::SafetensorsFile(const std::string& path, const std::optional<FileDigest>& expected)
    : file_(std::make_unique<FileReader>(path)) {
  const uint64_t size = file_->size();
  if (expected) verify(*expected);
  char first8[8] = {};
  file_->read(0, first8, std::min<uint64_t>(8, size));
  const uint64_t length = header_length(first8, size, path);
  std::string text(length, '\0');
  file_->read(8, text.data(), length);
  data_start_ = 8 + length;
  entries_ = parse_header(text, size - data_start_, path);
}

const std::string& SafetensorsFile::path() const { return file_->path(); }

void SafetensorsFile::verify(const FileDigest& expected) const {
  const uint64_t size = file_->size();
  if (size != expected.bytes)
    throw Error(path() + ": truncated or overwritten: " + std::to_string(size) +
                " bytes, the manifest says " + std::to_string(expected.bytes));
  if (file_->digest().crc32 != expected.crc32)
    throw Error(path() + ": checksum mismatch: the file is corrupt");
}

const SafetensorsFile::Entry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end())
    throw Error(path() + ": missing tensor " + name + " (a checkpoint of a different model?)");
  return it->second;
}

void SafetensorsFile::read_into(const std::string& name, const at::Tensor& destination) const {
  const Entry& e = entry(name);
  TRIAGE_ASSERT(
      destination.sizes() == at::IntArrayRef(e.shape) && destination.scalar_type() == e.dtype,
      "reading " << name << " into a tensor of another shape or dtype");
  if (e.end == e.begin) return;
  if (destination.device().is_cpu() && destination.is_contiguous()) {
    file_->read(data_start_ + e.begin, destination.data_ptr(), e.end - e.begin);
    return;
  }
  const at::Tensor staging = read(name);
  destination.copy_(staging);
}

at::Tensor SafetensorsFile::read(const std::string& name) const {
  const Entry& e = entry(name);
  at::Tensor t = empty_for(e, path() + ": tensor " + name);
  if (e.end > e.begin) file_->read(data_start_ + e.begin, t.data_ptr(), e.end - e.begin);
  return t;
}

TensorMap SafetensorsFile::read_all() const {
  TensorMap tensors;
  for (const auto& [name, e] : entries_) tensors[name] = read(name);
  return tensors;
}

std::string encode_safetensors(const TensorMap& tensors,
                               const std::map<std::string, std::string>& metadata) {
  std::string out;
  emit(tensors, metadata, [&](const void* data, uint64_t bytes) {
    out.append(static_cast<const char*>(data), bytes);
  });
  return out;
}

TensorMap decode_safetensors(const std::string& bytes, const std::string& path) {
  const uint64_t length = header_length(bytes.data(), bytes.size(), path);
  const uint64_t data_start = 8 + length;
  const auto entries = parse_header(bytes.substr(8, length), bytes.size() - data_start, path);
  TensorMap tensors;
  for (const auto& [name, e] : entries) {
    at::Tensor t = empty_for(e, path + ": tensor " + name);
    // An empty tensor has no storage: memcpy from or to null is undefined even for 0 bytes.
    if (e.end > e.begin)
      std::memcpy(t.data_ptr(), bytes.data() + data_start + e.begin, e.end - e.begin);
    tensors[name] = t;
  }
  return tensors;
}

}  // namespace triage
