import CKernels
import Testing
import XLTensors

/// The thread pool of `CKernels`, which splits decode's products and the bfloat16 GEMM.
@Suite("Thread pool")
struct ThreadPoolTests {
  @Test("back-to-back tasks run each chunk once")
  func eachChunkOnce() {
    // Tasks of 9 and 2 chunks alternate, so a worker that is late for one task meets the next
    // task's other count. Every slot counts the runs of its chunk.
    xl_pool_set_threads(3)
    defer { xl_pool_set_threads(Int32(WeightMatrix.threadCount)) }
    let slots = 16
    let counts = UnsafeMutablePointer<Int32>.allocate(capacity: slots)
    defer { counts.deallocate() }
    var wrongTasks = 0
    for iteration in 0..<100_000 {
      let chunks = iteration % 2 == 0 ? 9 : 2
      counts.initialize(repeating: 0, count: slots)
      xl_pool_run({ context, chunk in
        context!.assumingMemoryBound(to: Int32.self)[Int(chunk)] += 1
      }, counts, Int32(chunks))
      let ranOnce = (0..<chunks).allSatisfy { counts[$0] == 1 }
      let nothingElse = (chunks..<slots).allSatisfy { counts[$0] == 0 }
      if !ranOnce || !nothingElse { wrongTasks += 1 }
    }
    #expect(wrongTasks == 0, "\(wrongTasks) of 100,000 tasks ran a chunk twice, missed one or ran one of another task")
  }

  @Test("one chunk runs on the caller alone")
  func singleChunkInline() {
    var ran: Int32 = 0
    withUnsafeMutablePointer(to: &ran) { pointer in
      xl_pool_run({ context, chunk in
        context!.assumingMemoryBound(to: Int32.self).pointee += chunk + 1
      }, pointer, 1)
    }
    #expect(ran == 1)
  }
}
