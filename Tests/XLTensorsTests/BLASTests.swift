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
