import Foundation
import Testing
import XLTensors
@testable import XLModels

/// Timings of the prefill (chunkwise), decode (recurrent step) and stage-1 (parallel) paths at the SmolLM2-135M
/// mixer shape: B = 1, NH = 9, DH = 64, S = 512. Runs only when `XLLAMA_BENCH` is set; use a
/// release build (`swift test -c release -Xswiftc -enable-testing --filter MLSTMBenchmark`).
@Suite("mLSTM timings", .enabled(if: ProcessInfo.processInfo.environment["XLLAMA_BENCH"] != nil))
struct MLSTMBenchmarkTests {
  static func seconds(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
  }

  @Test("chunkwise prefill and recurrent step")
  func prefillAndDecode() {
    let inputs = MLSTMInputs(batch: 1, heads: 9, sequence: 512, keyDim: 64, valueDim: 64, seed: 9)
    var prefillState = MLSTMState(zeros: 1, heads: 9, keyDim: 64, valueDim: 64)
    var h = Tensor(zeros: [1])
    var best = Double.infinity
    for _ in 0..<10 {
      var state = MLSTMState(zeros: 1, heads: 9, keyDim: 64, valueDim: 64)
      best = min(best, Self.seconds {
        h = MLSTMCell.chunkwise(q: inputs.q, k: inputs.k, v: inputs.v, i: inputs.i,
                                f: inputs.f, state: &state)
      })
      prefillState = state
    }
    print("mLSTM chunkwise, B 1, NH 9, S 512, DH 64: \(String(format: "%.3f", best * 1e3)) ms")

    let token = inputs.slice(0..<1)
    var state = prefillState
    let steps = 2000
    let total = Self.seconds {
      for _ in 0..<steps {
        _ = MLSTMCell.recurrentStep(q: token.q, k: token.k, v: token.v, i: token.i,
                                    f: token.f, state: &state)
      }
    }
    print("mLSTM recurrent step, B 1, NH 9, DH 64: \(String(format: "%.2f", total / Double(steps) * 1e6)) µs")

    var parallelH = Tensor(zeros: [1])
    let parallelTime = Self.seconds {
      parallelH = MLSTMCell.parallel(q: inputs.q, k: inputs.k, v: inputs.v, i: inputs.i,
                                     f: inputs.f)
    }
    let backwardTime = Self.seconds {
      _ = MLSTMCell.parallelBackward(q: inputs.q, k: inputs.k, v: inputs.v, i: inputs.i,
                                     f: inputs.f, dh: parallelH)
    }
    print("mLSTM parallel: \(String(format: "%.2f", parallelTime * 1e3)) ms, backward: \(String(format: "%.2f", backwardTime * 1e3)) ms")

    var reference = MLSTMState(zeros: 1, heads: 9, keyDim: 64, valueDim: 64)
    let expected = MLSTMCell.recurrent(q: inputs.q, k: inputs.k, v: inputs.v, i: inputs.i,
                                       f: inputs.f, state: &reference)
    #expect(relativeError(h, expected) <= 1e-4)
    #expect(relativeError(prefillState.c, reference.c) <= 1e-4)
    #expect(relativeError(parallelH, expected) <= 1e-4)
  }
}
