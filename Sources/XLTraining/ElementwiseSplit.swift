import Foundation

/// Splits independent work on `count` elements into contiguous ranges run on up to two
/// threads. Callers update each element independently, so the result does not depend on the
/// split.
enum ElementwiseSplit {
  /// Runs `body` over `0..<count` in one range when `count` is below twice `minimumPerThread`,
  /// else in two. The default keeps tensors below 2¹⁶ elements on the calling thread, where a
  /// thread hand-off would cost more than the update. Ranges start at multiples of 16.
  static func run(count: Int, minimumPerThread: Int = 1 << 15, _ body: (Range<Int>) -> Void) {
    let parts = count >= 2 * minimumPerThread ? min(2, ProcessInfo.processInfo.activeProcessorCount) : 1
    guard parts > 1 else {
      body(0..<count)
      return
    }
    // Range boundaries on multiples of 16 floats (one 64-byte cache line).
    let size = (count / parts + 15) / 16 * 16
    withoutActuallyEscaping(body) { body in
      let shared = UncheckedSendableBody(run: body)
      DispatchQueue.concurrentPerform(iterations: parts) { part in
        let start = min(count, part * size)
        shared.run(start..<(part == parts - 1 ? count : min(count, start + size)))
      }
    }
  }
}

/// A closure handed to worker threads that write disjoint ranges of the buffers it captures.
private struct UncheckedSendableBody: @unchecked Sendable {
  let run: (Range<Int>) -> Void
}
