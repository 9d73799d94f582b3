import CKernels
import Foundation
import Testing
import XLTensors
@testable import XLModels

/// The C kernels of decode's mixer (`xl_mlstm_step`, `xl_head_norm_gate`) against the Swift
/// reference `MLSTMCell.stepHead` and a plain loop of the head LayerNorm and gate.
@Suite("mixer step kernels")
struct MixerStepKernelTests {
  static let tolerance: Float = 2e-5

  /// Runs `steps` tokens of one head through both paths from the same random state and
  /// compares h and the state after every token. Widths of 64 take the vector path; 24 and 200
  /// fall back to the plain C loop, which must agree too.
  @Test("mLSTM step matches stepHead", arguments: [(64, 64), (32, 64), (16, 24), (8, 200)])
  func stepMatchesReference(keyDim: Int, valueDim: Int) {
    var random = MLSTMTestRandom(seed: UInt64(keyDim * 1000 + valueDim))
    var cReference = random.tensor([keyDim * valueDim]).data
    var nReference = random.tensor([keyDim]).data
    var mReference: Float = 0.5
    var cKernel = cReference
    var nKernel = nReference
    var mKernel = mReference
    for step in 0..<6 {
      let q = random.tensor([keyDim]).data
      let k = random.tensor([keyDim]).data
      let v = random.tensor([valueDim]).data
      // Large and very negative input gates as well, which move the stabilizer m.
      let i = step == 3 ? -30 : random.normal() * 4
      let f = random.normal() + 2
      var hReference = [Float](repeating: 0, count: valueDim)
      var hKernel = [Float](repeating: .nan, count: valueDim)
      MLSTMCell.stepHead(
        q: q, k: k, v: v, i: i, f: f, c: &cReference, n: &nReference, m: &mReference,
        keyDim: keyDim, valueDim: valueDim, h: &hReference)
      xl_mlstm_step(q, k, v, i, f, &cKernel, &nKernel, &mKernel, keyDim, valueDim, MLSTMCell.eps, &hKernel, 0)
      let label = "DQK \(keyDim), DV \(valueDim), step \(step)"
      #expect(maxRelativeDifference(hKernel, hReference) <= Self.tolerance, "h, \(label)")
      #expect(maxRelativeDifference(cKernel, cReference) <= Self.tolerance, "C, \(label)")
      #expect(maxRelativeDifference(nKernel, nReference) <= Self.tolerance, "n, \(label)")
      #expect(mKernel == mReference, "m, \(label)")
    }
  }

  @Test("head LayerNorm and gate match the plain loop", arguments: [64, 32, 24])
  func normGateMatchesReference(headDim: Int) {
    let heads = 5
    let width = heads * headDim
    var random = MLSTMTestRandom(seed: UInt64(headDim))
    let h = random.tensor([width], scale: 3, shift: 1).data
    // Gate pre-activations up to ±100, where σ saturates.
    var gate = random.tensor([width], scale: 4).data
    gate[0] = 100
    gate[1] = -100
    let weight = random.tensor([width]).data
    let eps: Float = 1e-5
    var expected = [Float](repeating: 0, count: width)
    for head in 0..<heads {
      let slice = h[(head * headDim)..<((head + 1) * headDim)]
      let mean = slice.reduce(0, +) / Float(headDim)
      let variance = slice.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(headDim)
      for j in 0..<headDim {
        let column = head * headDim + j
        expected[column] = (h[column] - mean) / (variance + eps).squareRoot() * weight[column]
          / (1 + exp(-gate[column]))
      }
    }
    for portable in [Int32(0), 1] {
      var actual = [Float](repeating: .nan, count: width)
      xl_head_norm_gate(h, gate, weight, heads, headDim, eps, &actual, portable)
      let difference = zip(actual, expected).map { abs($0 - $1) }.max() ?? .infinity
      #expect(difference <= 1e-5, "DH \(headDim), portable \(portable): \(difference)")
    }
  }

  /// Returns the largest |a − b| / max(|b|, 1) over two equal-length arrays.
  func maxRelativeDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var largest: Float = 0
    for (x, y) in zip(a, b) {
      let difference = abs(x - y) / max(abs(y), 1)
      if !(difference <= largest) { largest = difference.isNaN ? .infinity : difference }
    }
    return largest
  }
}
