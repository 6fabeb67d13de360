// Process-wide allocator settings for the training path.
#pragma once

namespace triage {

// Makes glibc serve large tensors from its heap and keep all freed memory, instead of mapping
// each large block fresh from the kernel and returning it on free. Every step allocates
// the same large activation buffers; fresh mappings cost a page fault per 4 KiB page on
// first touch, measured here at ~3x the time of the copy itself for a 32 MiB tensor.
// Call once at start-up, before large allocations.
void keep_freed_memory();

}  // namespace triage
