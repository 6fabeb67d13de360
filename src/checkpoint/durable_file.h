// The files a checkpoint is made of, handled in pieces so that none is ever held whole in
// memory: written durably (fsync before the rename that publishes them), read at offsets,
// and checksummed over their whole length (CRC-32, as zlib computes it) as they go.
#pragma once

#include <cstdint>
#include <string>

namespace triage {

// A file's size and CRC-32, as a checkpoint's manifest records them.
struct FileDigest {
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
  bool operator==(const FileDigest& o) const { return bytes == o.bytes && crc32 == o.crc32; }
};

// CRC-32 over any length. zlib's crc32() takes at most 2^32 - 1 bytes a call (its length
// is an unsigned int), so a longer span goes in pieces of at most max_piece bytes; tests
// shrink max_piece to prove the piecing without writing 4 GiB.
class Crc32 {
 public:
  static constexpr uint64_t kDefaultMaxPiece = uint64_t(1) << 30;
  explicit Crc32(uint64_t max_piece = kDefaultMaxPiece);
  void update(const void* data, uint64_t bytes);
  uint32_t value() const { return value_; }

 private:
  uint64_t max_piece_;
  uint32_t value_;
};

// Creates (or truncates) `path` and appends to it; finish() flushes it to the disk and
// returns what was written. Errors name the path and the system's reason.
class DurableWriter {
 public:
  explicit DurableWriter(std::string path);
  ~DurableWriter();  // closes without fsync if finish() was not reached (an error unwound)
  DurableWriter(const DurableWriter&) = delete;
  DurableWriter& operator=(const DurableWriter&) = delete;

  void write(const void* data, uint64_t bytes);
  FileDigest finish();

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t bytes_ = 0;
  Crc32 crc_;
};

// Reads a file at offsets; errors name the path.
class FileReader {
 public:
  explicit FileReader(std::string path);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Exactly `bytes` bytes from `offset` into `into`.
  void read(uint64_t offset, void* into, uint64_t bytes) const;
  // The whole file's size and CRC-32, read through a buffer of `buffer_bytes`.
  FileDigest digest(uint64_t buffer_bytes = uint64_t(64) << 20) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Writes `bytes` to `path` durably (small files: a manifest, `latest`).
void write_durably(const std::string& path, const std::string& bytes);
// fsync of a folder, so that a rename inside it is on the disk (best effort).
void sync_directory(const std::string& path);

}  // namespace triage
