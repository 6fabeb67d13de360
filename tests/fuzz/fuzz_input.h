// Hands a fuzzer's bytes to a reader that takes a path: an in-memory file (memfd) named
// /proc/self/fd/N, rewritten for every input, so fuzzing touches no disk.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace triage::fuzzing {

inline std::string as_file(const uint8_t* data, size_t size) {
  static const int fd = [] {
    const int created = memfd_create("triage-fuzz-input", 0);
    if (created < 0) std::abort();
    return created;
  }();
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != ssize_t(size)) std::abort();
  return "/proc/self/fd/" + std::to_string(fd);
}

}  // namespace triage::fuzzing
