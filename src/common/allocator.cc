// glibc malloc tuning; see allocator.h.
#include "common/allocator.h"

#include <malloc.h>

namespace triage {

void keep_freed_memory() {
  mallopt(M_MMAP_MAX, 0);              // no per-allocation mmap: all from the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);  // keep up to 1 GiB of free heap for reuse
}

}  // namespace triage
