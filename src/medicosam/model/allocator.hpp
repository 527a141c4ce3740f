#pragma once
// Keeping freed memory in the process instead of returning it to the kernel.
//
// An encoder pass allocates and frees many 5-30 MB tensors. glibc's malloc
// hands blocks of that size back to the kernel when they are freed (mmap
// threshold, heap trimming), so every block and head paged the same memory in
// again: in a profile of the bfloat16 ViT-B encoder the first writes into
// fresh buffers (page faults) took as long as the matrix products. A fixed
// 32 MB mmap threshold (glibc's maximum) and no trimming make freed blocks
// reusable; the resident size then stays at its peak, which for one model is
// what a long-running process needs anyway. Process-wide and idempotent; a
// no-op outside glibc. MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ set by
// the user win (they are read by glibc at start-up and we leave them alone).
#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace medicosam::model {

inline void retain_freed_memory() {
#if defined(__GLIBC__)
  static const bool done = [] {
    if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 32 << 20);
    if (!std::getenv("MALLOC_TRIM_THRESHOLD_")) mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)done;
#endif
}

}  // namespace medicosam::model
