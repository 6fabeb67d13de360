// The safetensors layout with nlohmann::json for the header.
#include "checkpoint/safetensors.h"

#include <nlohmann/json.hpp>

#include <cstring>

#include "common/error.h"
#include "common/json_number.h"

namespace triage {

namespace {

const std::map<at::ScalarType, std::string>& dtype_names() {
  static const std::map<at::ScalarType, std::string> names = {
      {at::kFloat, "F32"}, {at::kDouble, "F64"}, {at::kLong, "I64"}, {at::kByte, "U8"}};
  return names;
}

at::ScalarType dtype_of(const std::string& name, const std::string& where) {
  for (const auto& [type, text] : dtype_names())
    if (text == name) return type;
  throw Error(where + ": unsupported dtype " + name + "; expected F32, F64, I64 or U8");
}

}  // namespace

std::string encode_safetensors(const TensorMap& tensors,
                               const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> contiguous;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    auto dtype = dtype_names().find(t.scalar_type());
    TRIAGE_ASSERT(dtype != dtype_names().end(),
                  "cannot store " << name << " of " << t.scalar_type());
    const uint64_t bytes = t.numel() * t.element_size();
    header[name] = {{"dtype", dtype->second},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(t);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the format pads the header to 8 bytes
  std::string out(8, '\0');
  const uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) out[i] = char((length >> (8 * i)) & 0xff);
  out += text;
  for (const at::Tensor& t : contiguous)
    out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  return out;
}

TensorMap decode_safetensors(const std::string& bytes, const std::string& path) {
  if (bytes.size() < 8)
    throw Error(path + ": " + std::to_string(bytes.size()) + " bytes; not a tensor file");
  uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  if (length > bytes.size() - 8)
    throw Error(path + ": header length " + std::to_string(length) + " exceeds the file");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.substr(8, length));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": header is not valid JSON (" + e.what() + ")");
  }
  const uint64_t data_start = 8 + length, data_size = bytes.size() - data_start;
  TensorMap tensors;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string where = path + ": tensor " + name;
    try {
      const at::ScalarType dtype = dtype_of(entry.at("dtype").get<std::string>(), where);
      const nlohmann::json& shape_json = entry.at("shape");
      const nlohmann::json& offsets_json = entry.at("data_offsets");
      if (!shape_json.is_array() || !offsets_json.is_array() || offsets_json.size() != 2)
        throw Error(where + ": expected shape [sizes] and data_offsets [begin, end]");
      // The shape is checked against the file before anything is allocated, so that a
      // damaged size cannot ask for more memory than the file could hold.
      std::vector<int64_t> shape;
      uint64_t want = uint64_t(at::elementSize(dtype));
      for (const nlohmann::json& size : shape_json) {
        shape.push_back(whole_number<int64_t>(size, where + ": shape entry"));
        if (shape.back() < 0) throw Error(where + ": negative size in shape " + shape_json.dump());
        if (shape.back() != 0 && want > data_size / uint64_t(shape.back()))
          want = data_size + 1;  // more than the file holds, without overflowing
        else
          want *= uint64_t(shape.back());
      }
      const uint64_t begin = whole_number<uint64_t>(offsets_json[0], where + ": data_offsets");
      const uint64_t end = whole_number<uint64_t>(offsets_json[1], where + ": data_offsets");
      if (end < begin || end - begin != want || end > data_size)
        throw Error(where + ": data_offsets do not fit its shape or the file");
      at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
      // An empty tensor has no storage: memcpy from or to null is undefined even for 0 bytes.
      if (want > 0) std::memcpy(t.data_ptr(), bytes.data() + data_start + begin, want);
      tensors[name] = t;
    } catch (const nlohmann::json::exception& e) {
      throw Error(where + ": malformed entry (" + e.what() + ")");
    } catch (const c10::Error& e) {
      throw Error(where + ": " + e.what_without_backtrace());
    }
  }
  return tensors;
}

}  // namespace triage
