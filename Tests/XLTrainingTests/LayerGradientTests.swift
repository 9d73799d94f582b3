import Testing
import XLTensors
@testable import XLTraining

/// Finite-difference tolerance for Float forward passes with h = 1e-2: truncation error is
/// O(h²) and rounding noise about 1e-7 / h, both far below 3e-3.
private let tolerance = 3e-3

@Suite("Layer gradients")
struct LayerGradientTests {
  @Test("embedding scatter-adds")
  func embedding() {
    let vocabSize = 5, dim = 3
    let ids: [Int32] = [1, 4, 1, 0]
    let table = randomFloats(vocabSize * dim, seed: 1)
    let weights = randomFloats(ids.count * dim, seed: 2)
    var output = [Float](repeating: 0, count: ids.count * dim)
    TrainingKernels.embeddingForward(
      ids: ids, count: ids.count, table: table, vocabSize: vocabSize, dim: dim, into: &output)
    #expect(Array(output[3..<6]) == Array(table[12..<15]))

    var tableGrad = [Float](repeating: 0, count: table.count)
    TrainingKernels.embeddingBackward(
      ids: ids, count: ids.count, outputGrad: weights, dim: dim, tableGrad: &tableGrad)
    #expect(tableGrad[3] == weights[0] + weights[6])
    let error = worstGradientError(input: table, analytic: tableGrad) { probe in
      var out = [Float](repeating: 0, count: ids.count * dim)
      TrainingKernels.embeddingForward(
        ids: ids, count: ids.count, table: probe, vocabSize: vocabSize, dim: dim, into: &out)
      return projected(out, weights)
    }
    #expect(error < tolerance)
  }

  @Test("linear with bias")
  func linear() {
    let rows = 3, inFeatures = 4, outFeatures = 5
    let x = randomFloats(rows * inFeatures, seed: 3)
    let w = randomFloats(outFeatures * inFeatures, seed: 4)
    let b = randomFloats(outFeatures, seed: 5)
    let dy = randomFloats(rows * outFeatures, seed: 6)
    func forward(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
      var y = [Float](repeating: 0, count: rows * outFeatures)
      TrainingKernels.linearForward(
        x, rows: rows, inFeatures: inFeatures, weight: w, bias: b, outFeatures: outFeatures,
        into: &y)
      return projected(y, dy)
    }
    var dx = [Float](repeating: 0, count: x.count)
    var dw = [Float](repeating: 0, count: w.count)
    var db = [Float](repeating: 0, count: b.count)
    TrainingKernels.linearBackward(
      x, rows: rows, inFeatures: inFeatures, weight: w, outFeatures: outFeatures,
      outputGrad: dy, inputGrad: &dx, weightGrad: &dw, biasGrad: &db)
    #expect(worstGradientError(input: x, analytic: dx) { forward($0, w, b) } < tolerance)
    #expect(worstGradientError(input: w, analytic: dw) { forward(x, $0, b) } < tolerance)
    #expect(worstGradientError(input: b, analytic: db) { forward(x, w, $0) } < tolerance)
  }

  @Test("linear backward accumulates")
  func linearAccumulates() {
    let x: [Float] = [1, 2], w: [Float] = [3, 4], dy: [Float] = [1]
    var dx: [Float] = [10, 20]
    var dw: [Float] = [100, 200]
    TrainingKernels.linearBackward(
      x, rows: 1, inFeatures: 2, weight: w, outFeatures: 1, outputGrad: dy,
      inputGrad: &dx, weightGrad: &dw)
    #expect(dx == [13, 24])
    #expect(dw == [101, 202])
  }

  @Test("RMSNorm")
  func rmsNorm() {
    let rows = 3, dim = 6, eps: Float = 1e-5
    let x = randomFloats(rows * dim, seed: 7)
    let w = randomFloats(dim, seed: 8)
    let dy = randomFloats(rows * dim, seed: 9)
    func forward(_ x: [Float], _ w: [Float]) -> Double {
      var y = [Float](repeating: 0, count: x.count)
      var saved = [Float](repeating: 0, count: rows)
      TrainingKernels.rmsNormForward(
        x, rows: rows, dim: dim, weight: w, eps: eps, into: &y, savedInverseRMS: &saved)
      return projected(y, dy)
    }
    var y = [Float](repeating: 0, count: x.count)
    var saved = [Float](repeating: 0, count: rows)
    TrainingKernels.rmsNormForward(
      x, rows: rows, dim: dim, weight: w, eps: eps, into: &y, savedInverseRMS: &saved)
    var dx = [Float](repeating: 0, count: x.count)
    var dw = [Float](repeating: 0, count: w.count)
    TrainingKernels.rmsNormBackward(
      x, rows: rows, dim: dim, weight: w, savedInverseRMS: saved, outputGrad: dy,
      inputGrad: &dx, weightGrad: &dw)
    #expect(worstGradientError(input: x, analytic: dx) { forward($0, w) } < tolerance)
    #expect(worstGradientError(input: w, analytic: dw) { forward(x, $0) } < tolerance)
  }

  @Test("per-head LayerNorm")
  func headLayerNorm() {
    let rows = 2, heads = 3, headDim = 4, eps: Float = 1e-5
    let x = randomFloats(rows * heads * headDim, seed: 10)
    let w = randomFloats(heads * headDim, seed: 11)
    let dy = randomFloats(x.count, seed: 12)
    func run(_ x: [Float], _ w: [Float]) -> ([Float], [Float], [Float]) {
      var y = [Float](repeating: 0, count: x.count)
      var mean = [Float](repeating: 0, count: rows * heads)
      var inverseStd = [Float](repeating: 0, count: rows * heads)
      TrainingKernels.headLayerNormForward(
        x, rows: rows, heads: heads, headDim: headDim, weight: w, eps: eps, into: &y,
        savedMean: &mean, savedInverseStd: &inverseStd)
      return (y, mean, inverseStd)
    }
    let (y, mean, inverseStd) = run(x, w)
    var headMean: Float = 0
    for j in 0..<headDim { headMean += y[headDim + j] / w[headDim + j] }
    #expect(abs(headMean) < 1e-5, "normalized head has mean \(headMean), tolerance 1e-5")

    var dx = [Float](repeating: 0, count: x.count)
    var dw = [Float](repeating: 0, count: w.count)
    TrainingKernels.headLayerNormBackward(
      x, rows: rows, heads: heads, headDim: headDim, weight: w, savedMean: mean,
      savedInverseStd: inverseStd, outputGrad: dy, inputGrad: &dx, weightGrad: &dw)
    #expect(worstGradientError(input: x, analytic: dx) { projected(run($0, w).0, dy) } < tolerance)
    #expect(worstGradientError(input: w, analytic: dw) { projected(run(x, $0).0, dy) } < tolerance)
  }

  @Test("SwiGLU")
  func swiGLU() {
    let count = 12
    let gate = randomFloats(count, seed: 13, scale: 3)
    let up = randomFloats(count, seed: 14)
    let dy = randomFloats(count, seed: 15)
    func forward(_ gate: [Float], _ up: [Float]) -> Double {
      var y = [Float](repeating: 0, count: count)
      TrainingKernels.swiGLUForward(gate: gate, up: up, count: count, into: &y)
      return projected(y, dy)
    }
    var dg = [Float](repeating: 0, count: count)
    var du = [Float](repeating: 0, count: count)
    TrainingKernels.swiGLUBackward(
      gate: gate, up: up, count: count, outputGrad: dy, gateGrad: &dg, upGrad: &du)
    #expect(worstGradientError(input: gate, analytic: dg) { forward($0, up) } < tolerance)
    #expect(worstGradientError(input: up, analytic: du) { forward(gate, $0) } < tolerance)
  }

  @Test("soft cap")
  func softCap() {
    let count = 10, cap: Float = 15
    let x = randomFloats(count, seed: 16, scale: 30)
    let dy = randomFloats(count, seed: 17)
    var y = [Float](repeating: 0, count: count)
    TrainingKernels.softCapForward(x, count: count, cap: cap, into: &y)
    #expect(y.allSatisfy { abs($0) < cap })
    var dx = [Float](repeating: 0, count: count)
    TrainingKernels.softCapBackward(
      savedOutput: y, count: count, cap: cap, outputGrad: dy, inputGrad: &dx)
    let error = worstGradientError(input: x, analytic: dx) { probe in
      var out = [Float](repeating: 0, count: count)
      TrainingKernels.softCapForward(probe, count: count, cap: cap, into: &out)
      return projected(out, dy)
    }
    #expect(error < tolerance)
  }

  @Test("sigmoid gate")
  func sigmoidGate() {
    let count = 10
    let h = randomFloats(count, seed: 18)
    let o = randomFloats(count, seed: 19, scale: 4)
    let dy = randomFloats(count, seed: 20)
    func forward(_ h: [Float], _ o: [Float]) -> Double {
      var y = [Float](repeating: 0, count: count)
      TrainingKernels.sigmoidGateForward(h, gate: o, count: count, into: &y)
      return projected(y, dy)
    }
    var dh = [Float](repeating: 0, count: count)
    var dO = [Float](repeating: 0, count: count)
    TrainingKernels.sigmoidGateBackward(
      h, gate: o, count: count, outputGrad: dy, inputGrad: &dh, gateGrad: &dO)
    #expect(worstGradientError(input: h, analytic: dh) { forward($0, o) } < tolerance)
    #expect(worstGradientError(input: o, analytic: dO) { forward(h, $0) } < tolerance)
  }

  @Test("residual add")
  func residual() {
    let x: [Float] = [1, 2, 3], branch: [Float] = [10, 20, 30]
    var y = [Float](repeating: 0, count: 3)
    TrainingKernels.residualForward(x, branch: branch, count: 3, into: &y)
    #expect(y == [11, 22, 33])
    var dx: [Float] = [1, 1, 1]
    var dBranch: [Float] = [0, 0, 0]
    TrainingKernels.residualBackward(
      outputGrad: [0.5, -1, 2], count: 3, inputGrad: &dx, branchGrad: &dBranch)
    #expect(dx == [1.5, 0, 3])
    #expect(dBranch == [0.5, -1, 2])
  }
}
