// glibc malloc tuning; see allocator.h.
#include "common/allocator.h"

#include <malloc.h>

namespace triage {

void keep_freed_memory() {
  mallopt(M_MMAP_MAX, 0);  // no per-allocation mmap: all from the heap
  // Never trim (mallopt(3): -1 disables trimming): at hundreds of experts one step's expert
  // gradients alone pass 1 GiB, and any cap re-faults them every step (measured: page
  // clearing was 45% of a 256-expert layer's time with a 1 GiB cap).
  mallopt(M_TRIM_THRESHOLD, -1);
}

}  // namespace triage
