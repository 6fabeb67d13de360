// Mapping and checking a token file; see the header for the layout.
#include "data/token_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace triage {
namespace {

// The file is little-endian. Header fields are read byte by byte (any alignment); the ids
// are copied as they lie, which needs a little-endian machine, as every one we run on.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token files are little-endian");

uint64_t little_endian(const unsigned char* p, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

}  // namespace

TokenFile::TokenFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw Error(path + ": cannot open the token file (" + std::strerror(errno) + ")");
  struct stat info {};
  if (::fstat(fd_, &info) != 0) {
    const int err = errno;
    ::close(fd_);
    throw Error(path + ": cannot read the token file's size (" + std::strerror(err) + ")");
  }
  map_bytes_ = size_t(info.st_size);
  auto fail = [&](const std::string& what) {
    release();  // the constructor throws, so the destructor will not run
    throw Error(path + ": " + what);
  };
  if (map_bytes_ < kHeaderBytes)
    fail(std::to_string(map_bytes_) + " bytes; expected a token file of at least a " +
         std::to_string(kHeaderBytes) + "-byte header (written by ./launch/tokenize)");
  void* map = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_SHARED, fd_, 0);
  if (map == MAP_FAILED)
    fail(std::string("cannot map the token file (") + std::strerror(errno) + ")");
  map_ = static_cast<const unsigned char*>(map);
  if (std::memcmp(map_, kMagic, 8) != 0)
    fail(
        "not a token file: expected the magic \"TRIAGETK\" in its first 8 bytes (write one with "
        "./launch/tokenize)");
  const uint64_t version = little_endian(map_ + 8, 4);
  if (version != kVersion)
    fail("token file format version " + std::to_string(version) + "; expected " +
         std::to_string(kVersion));
  id_bytes_ = int64_t(little_endian(map_ + 12, 4));
  if (id_bytes_ != 2 && id_bytes_ != 4)
    fail("header says " + std::to_string(id_bytes_) +
         " bytes per token id; expected 2 (uint16) or 4 (uint32)");
  const uint64_t vocab = little_endian(map_ + 16, 8), eod = little_endian(map_ + 24, 8);
  const uint64_t tokens = little_endian(map_ + 32, 8), documents = little_endian(map_ + 40, 8);
  tokenizer_crc32_ = uint32_t(little_endian(map_ + 48, 4));
  const uint64_t max_vocab = uint64_t(1) << (8 * id_bytes_);
  if (vocab == 0 || vocab > max_vocab)
    fail("header says vocabulary size " + std::to_string(vocab) + "; expected 1 to " +
         std::to_string(max_vocab) + " for " + std::to_string(id_bytes_) + "-byte ids");
  if (eod >= vocab)
    fail("header says end-of-document id " + std::to_string(eod) +
         "; expected an id below the vocabulary size " + std::to_string(vocab));
  if (documents == 0 || tokens < documents)
    fail("header says " + std::to_string(tokens) + " tokens in " + std::to_string(documents) +
         " documents; expected at least one document, each ending in the end-of-document id");
  // Sizes bounded by the file before they are multiplied, so nothing overflows.
  const uint64_t body = map_bytes_ - kHeaderBytes;
  if (tokens > body / uint64_t(id_bytes_) || documents + 1 > body / 8 ||
      kHeaderBytes + tokens * uint64_t(id_bytes_) + (documents + 1) * 8 != map_bytes_)
    fail(std::to_string(map_bytes_) + " bytes; expected " + std::to_string(kHeaderBytes) + " + " +
         std::to_string(tokens) + " ids of " + std::to_string(id_bytes_) + " bytes + " +
         std::to_string(documents + 1) + " document starts of 8 bytes (truncated or not ours)");
  vocab_size_ = int64_t(vocab);
  end_of_document_ = int64_t(eod);
  tokens_ = int64_t(tokens);
  documents_ = int64_t(documents);
  ids_ = map_ + kHeaderBytes;
  starts_ = ids_ + tokens * uint64_t(id_bytes_);
  // The start table is read once, in order: O(documents), never the ids.
  uint64_t previous = 0;
  for (int64_t d = 0; d <= documents_; ++d) {
    const uint64_t start = little_endian(starts_ + 8 * d, 8);
    const bool fine = d == 0            ? start == 0
                      : d == documents_ ? start == tokens && start > previous
                                        : start > previous && start < tokens;
    if (!fine)
      fail("document start " + std::to_string(d) + " is " + std::to_string(start) +
           "; expected starts rising from 0, each document at least its end-of-document id, "
           "the last equal to the " +
           std::to_string(tokens) + " tokens");
    previous = start;
  }
  ::madvise(const_cast<unsigned char*>(map_), map_bytes_, MADV_RANDOM);  // windows, not a scan
}

TokenFile::~TokenFile() { release(); }

void TokenFile::release() {
  if (map_) ::munmap(const_cast<unsigned char*>(map_), map_bytes_);
  if (fd_ >= 0) ::close(fd_);
  map_ = nullptr;
  fd_ = -1;
}

int64_t TokenFile::document_start(int64_t d) const {
  TRIAGE_ASSERT(d >= 0 && d <= documents_, "document " << d << " of " << documents_);
  return int64_t(little_endian(starts_ + 8 * d, 8));
}

void TokenFile::read(int64_t start, int64_t count, int64_t* out) const {
  TRIAGE_ASSERT(start >= 0 && count >= 0 && start + count <= tokens_,
                "ids [" << start << ", " << start + count << ") of " << tokens_);
  if (id_bytes_ == 2) {
    for (int64_t i = 0; i < count; ++i) {
      uint16_t id;
      std::memcpy(&id, ids_ + 2 * (start + i), 2);
      out[i] = id;
    }
  } else {
    for (int64_t i = 0; i < count; ++i) {
      uint32_t id;
      std::memcpy(&id, ids_ + 4 * (start + i), 4);
      out[i] = id;
    }
  }
  for (int64_t i = 0; i < count; ++i)
    if (out[i] >= vocab_size_)
      throw Error(path_ + ": token " + std::to_string(start + i) + " is id " +
                  std::to_string(out[i]) + "; expected an id below the vocabulary size " +
                  std::to_string(vocab_size_) + " the header states (a corrupt file)");
}

}  // namespace triage
