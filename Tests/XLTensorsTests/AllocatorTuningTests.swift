import Testing
import XLTensors

@Suite("Allocator settings")
struct AllocatorTuningTests {
  @Test("glibc accepts the settings for long runs")
  func settingsTake() {
    #if os(Linux)
    #expect(AllocatorTuning.keepFreedMemory())
    #else
    #expect(!AllocatorTuning.keepFreedMemory())
    #endif
  }
}
