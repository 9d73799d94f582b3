import Foundation
import Testing
@testable import XLTensors

@Suite("BLAS products")
struct BLASTests {
  @Test("linear matches a naive product")
  func linearMatchesNaive() {
    let rows = 3, inFeatures = 5, outFeatures = 4
    let x = (0..<(rows * inFeatures)).map { Float($0 % 7) - 3 }
    let w = (0..<(outFeatures * inFeatures)).map { Float(($0 * 5) % 11) / 10 - 0.5 }
    var y = [Float](repeating: 0, count: rows * outFeatures)
    BLAS.linear(x, rows: rows, inFeatures: inFeatures, weight: w, outFeatures: outFeatures, into: &y)
    for r in 0..<rows {
      for o in 0..<outFeatures {
        var expected: Float = 0
        for i in 0..<inFeatures { expected += x[r * inFeatures + i] * w[o * inFeatures + i] }
        #expect(abs(y[r * outFeatures + o] - expected) < 1e-5)
      }
    }
  }

  @Test("single-row linear uses the same layout")
  func singleRowLinear() {
    let x: [Float] = [1, 2]
    let w: [Float] = [1, 0, 0, 1, 1, 1]
    var y = [Float](repeating: 0, count: 3)
    BLAS.linear(x, rows: 1, inFeatures: 2, weight: w, outFeatures: 3, into: &y)
    #expect(y == [1, 2, 3])
  }
}

@Suite("Vectorized exp kernels")
struct VectorExpTests {
  @Test("softmax matches double precision")
  func softmaxMatches() {
    for count in [1, 7, 16, 33, 512] {
      var random = SplitMix64(seed: UInt64(count))
      let values = (0..<count).map { _ in random.nextNormal() * 20 }
      var row = values
      row.withUnsafeMutableBufferPointer { Kernels.softmax($0.baseAddress!, count: count) }
      let largest = values.max()!
      let total = values.reduce(0.0) { $0 + Foundation.exp(Double($1 - largest)) }
      for index in 0..<count {
        let expected = Foundation.exp(Double(values[index] - largest)) / total
        #expect(abs(Double(row[index]) - expected) <= 2e-6 * expected + 1e-30, "count \(count), index \(index)")
      }
    }
  }

  @Test("silu multiply matches the reference")
  func siluMatches() {
    var random = SplitMix64(seed: 11)
    let count = 1000
    let gate = (0..<count).map { _ in random.nextNormal() * 30 }
    let up = (0..<count).map { _ in random.nextNormal() }
    var fast = gate
    var slow = gate
    fast.withUnsafeMutableBufferPointer { Kernels.siluMultiply(gate: $0.baseAddress!, up: up, count: count) }
    slow.withUnsafeMutableBufferPointer { Kernels.referenceSiluMultiply(gate: $0.baseAddress!, up: up, count: count) }
    for index in 0..<count {
      #expect(abs(fast[index] - slow[index]) <= 2e-6 * abs(slow[index]) + 1e-30, "index \(index): \(gate[index])")
    }
  }
}
