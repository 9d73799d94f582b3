import CKernels

/// Process-wide settings of the C allocator for long numeric runs.
public enum AllocatorTuning {
  /// Keeps freed memory in the process instead of returning it to the system, for loops that
  /// allocate and free the same large buffers every step (a training step's activations and
  /// logits). glibc otherwise serves each allocation above its threshold with a fresh `mmap`
  /// and gives trimmed heap back, so every step pays to fault in and zero the same pages again:
  /// a sixth of a stage-3 step on SmolLM2-135M. Allocations up to 32 MiB (glibc's largest
  /// threshold) then come from the heap, and the heap is trimmed only beyond 2 GiB of free
  /// memory at its top. The resident set stays near its peak afterwards. Returns whether the
  /// settings took (false without glibc).
  @discardableResult
  public static func keepFreedMemory() -> Bool { xl_keep_freed_memory() == 1 }

  /// Returns the allocator's free memory to the system. Loading a model frees the arrays its
  /// weights were read into once they are copied to aligned buffers (`AlignedElements`), and
  /// glibc keeps such freed heap memory resident. So a model loader calls this when it is done.
  public static func releaseFreeMemory() { _ = xl_release_free_memory() }
}
