// glibc allocator settings for long numeric runs; see AllocatorTuning.swift.

#include "ckernels.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

int xl_keep_freed_memory(void) {
#if defined(__GLIBC__)
  // 32 MiB is the largest mmap threshold glibc accepts on 64-bit systems.
  const int threshold = mallopt(M_MMAP_THRESHOLD, 32 << 20);
  const int trim = mallopt(M_TRIM_THRESHOLD, 0x7FFFFFFF);
  return threshold == 1 && trim == 1;
#else
  return 0;
#endif
}

int xl_release_free_memory(void) {
#if defined(__GLIBC__)
  return malloc_trim(0);
#else
  return 0;
#endif
}
