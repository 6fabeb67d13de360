// POSIX file calls with EINTR retried and errors turned into Error lines; zlib's CRC-32.
#include "checkpoint/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <vector>

#include "common/error.h"

namespace triage {

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw Error(path + ": cannot " + what + ": " + std::strerror(errno));
}

}  // namespace

Crc32::Crc32(uint64_t max_piece)
    : max_piece_(
          std::min<uint64_t>(std::max<uint64_t>(max_piece, 1), std::numeric_limits<uInt>::max())),
      value_(uint32_t(crc32(0L, Z_NULL, 0))) {}

void Crc32::update(const void* data, uint64_t bytes) {
  const auto* at = static_cast<const Bytef*>(data);
  while (bytes > 0) {
    const uint64_t piece = std::min(bytes, max_piece_);
    value_ = uint32_t(crc32(value_, at, uInt(piece)));
    at += piece;
    bytes -= piece;
  }
}

DurableWriter::DurableWriter(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("create", path_);
}

DurableWriter::~DurableWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void DurableWriter::write(const void* data, uint64_t bytes) {
  crc_.update(data, bytes);
  const char* at = static_cast<const char*>(data);
  while (bytes > 0) {
    // Linux writes at most 0x7ffff000 bytes a call.
    const ssize_t n = ::write(fd_, at, std::min<uint64_t>(bytes, uint64_t(1) << 30));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("write", path_);
    at += n;
    bytes -= uint64_t(n);
    bytes_ += uint64_t(n);
  }
}

FileDigest DurableWriter::finish() {
  const bool synced = ::fsync(fd_) == 0;
  const int saved_errno = errno;
  ::close(fd_);
  fd_ = -1;
  errno = saved_errno;
  if (!synced) fail("fsync", path_);
  return {bytes_, crc_.value()};
}

FileReader::FileReader(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    if (errno == ENOENT) throw Error(path_ + ": cannot open (missing from the checkpoint?)");
    fail("open", path_);
  }
  struct stat info {};
  if (::fstat(fd_, &info) != 0) {
    const int saved_errno = errno;
    ::close(fd_);
    errno = saved_errno;
    fail("stat", path_);
  }
  size_ = uint64_t(info.st_size);
}

FileReader::~FileReader() {
  if (fd_ >= 0) ::close(fd_);
}

void FileReader::read(uint64_t offset, void* into, uint64_t bytes) const {
  char* at = static_cast<char*>(into);
  while (bytes > 0) {
    const ssize_t n = ::pread(fd_, at, std::min<uint64_t>(bytes, uint64_t(1) << 30), off_t(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("read", path_);
    if (n == 0) throw Error(path_ + ": ends early (truncated while being read?)");
    at += n;
    offset += uint64_t(n);
    bytes -= uint64_t(n);
  }
}

FileDigest FileReader::digest(uint64_t buffer_bytes) const {
  std::vector<char> buffer(
      std::max<uint64_t>(1, std::min(buffer_bytes, std::max<uint64_t>(size_, 1))));
  Crc32 crc;
  for (uint64_t offset = 0; offset < size_;) {
    const uint64_t piece = std::min<uint64_t>(buffer.size(), size_ - offset);
    read(offset, buffer.data(), piece);
    crc.update(buffer.data(), piece);
    offset += piece;
  }
  return {size_, crc.value()};
}

void write_durably(const std::string& path, const std::string& bytes) {
  DurableWriter writer(path);
  writer.write(bytes.data(), bytes.size());
  writer.finish();
}

void sync_directory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some filesystems do not allow it
  ::fsync(fd);
  ::close(fd);
}

}  // namespace triage
