import Foundation
import Testing
import XLTensors
@testable import XLModels

/// The parallel form and its mixing matrix in Double, written straight from the formula, for
/// finite differences: `logD_ts = Σ_{r=s+1..t} logσ(f_r) + i_s`, `m_t = max_s logD_ts`,
/// `Cmix_ts = (q̃_t·k_s) exp(logD_ts − m_t) / (max(|Σ_s …|, exp(−m_t)) + 1e-6)`.
struct DoubleParallelReference {
  var q, k, v, i, f: [Double]
  let heads, sequence, keyDim, valueDim: Int

  init(_ inputs: MLSTMInputs) {
    q = inputs.q.data.map(Double.init)
    k = inputs.k.data.map(Double.init)
    v = inputs.v.data.map(Double.init)
    i = inputs.i.data.map(Double.init)
    f = inputs.f.data.map(Double.init)
    heads = inputs.q.shape[0] * inputs.q.shape[1]
    sequence = inputs.q.shape[2]
    keyDim = inputs.q.shape[3]
    valueDim = inputs.v.shape[3]
  }

  func mixing() -> [Double] {
    let s = sequence
    var result = [Double](repeating: 0, count: heads * s * s)
    for head in 0..<heads {
      for t in 0..<s {
        var logDecay = [Double](repeating: -.infinity, count: s)
        for column in 0...t {
          var total = i[head * s + column]
          for r in stride(from: column + 1, through: t, by: 1) {
            let x = f[head * s + r]
            total += -log(1 + exp(-x))
          }
          logDecay[column] = total
        }
        let rowMax = logDecay[0...t].max()!
        var tilde = [Double](repeating: 0, count: s)
        for column in 0...t {
          var dot = 0.0
          for d in 0..<keyDim {
            dot += q[(head * s + t) * keyDim + d] * k[(head * s + column) * keyDim + d]
          }
          tilde[column] = dot / Double(keyDim).squareRoot() * exp(logDecay[column] - rowMax)
        }
        let normalizer = max(abs(tilde.reduce(0, +)), exp(-rowMax)) + 1e-6
        for column in 0..<s { result[(head * s + t) * s + column] = tilde[column] / normalizer }
      }
    }
    return result
  }

  /// sum(h · dh) with h = Cmix v.
  func loss(dh: [Double]) -> Double {
    let s = sequence
    let weights = mixing()
    var total = 0.0
    for head in 0..<heads {
      for t in 0..<s {
        for column in 0...t {
          let weight = weights[(head * s + t) * s + column]
          for d in 0..<valueDim {
            total += weight * v[(head * s + column) * valueDim + d]
              * dh[(head * s + t) * valueDim + d]
          }
        }
      }
    }
    return total
  }

  /// Central differences of `objective` with respect to every element of the input at
  /// `keyPath`.
  func numericalGradient(
    _ keyPath: WritableKeyPath<DoubleParallelReference, [Double]>,
    objective: (DoubleParallelReference) -> Double
  ) -> [Double] {
    let step = 1e-5
    var copy = self
    var gradient: [Double] = []
    for index in 0..<self[keyPath: keyPath].count {
      let original = copy[keyPath: keyPath][index]
      copy[keyPath: keyPath][index] = original + step
      let plus = objective(copy)
      copy[keyPath: keyPath][index] = original - step
      let minus = objective(copy)
      copy[keyPath: keyPath][index] = original
      gradient.append((plus - minus) / (2 * step))
    }
    return gradient
  }
}

@Suite("mLSTM parallel backward")
struct MLSTMBackwardTests {
  static let tolerance: Float = 1e-3

  static func expectClose(_ actual: Tensor, _ expected: [Double], _ label: String) {
    let reference = Tensor(shape: actual.shape, data: expected.map(Float.init))
    let error = relativeError(actual, reference)
    #expect(error <= tolerance, "\(label): error \(error)")
  }

  static func expectFinite(_ tensor: Tensor, _ label: String) {
    let allFinite = tensor.data.allSatisfy { $0.isFinite }
    #expect(allFinite, "\(label) has a non-finite value")
  }

  /// Inputs for gate regimes: `inputGateShift` −5 makes exp(−m) the normalizer in most rows.
  static func inputs(sequence: Int, inputGateShift: Float, seed: UInt64) -> MLSTMInputs {
    var inputs = MLSTMInputs(batch: 1, heads: 2, sequence: sequence, keyDim: 4, valueDim: 3,
                             seed: seed)
    inputs.i = Tensor(shape: inputs.i.shape, data: inputs.i.data.map { $0 + inputGateShift })
    return inputs
  }

  static func checkParallelBackward(_ inputs: MLSTMInputs, seed: UInt64, label: String) {
    var random = MLSTMTestRandom(seed: seed)
    let dh = random.tensor(inputs.v.shape)
    let gradients = MLSTMCell.parallelBackward(
      q: inputs.q, k: inputs.k, v: inputs.v, i: inputs.i, f: inputs.f, dh: dh)
    let reference = DoubleParallelReference(inputs)
    let upstream = dh.data.map(Double.init)
    let objective = { (model: DoubleParallelReference) in model.loss(dh: upstream) }
    expectClose(gradients.dq, reference.numericalGradient(\.q, objective: objective), "dq, \(label)")
    expectClose(gradients.dk, reference.numericalGradient(\.k, objective: objective), "dk, \(label)")
    expectClose(gradients.dv, reference.numericalGradient(\.v, objective: objective), "dv, \(label)")
    expectClose(gradients.di, reference.numericalGradient(\.i, objective: objective), "di, \(label)")
    expectClose(gradients.df, reference.numericalGradient(\.f, objective: objective), "df, \(label)")
  }

  @Test("parallel gradients match finite differences", arguments: [Float(0), -5])
  func parallelGradients(inputGateShift: Float) {
    let inputs = Self.inputs(sequence: 6, inputGateShift: inputGateShift, seed: 21)
    Self.checkParallelBackward(inputs, seed: 22, label: "input gates shifted by \(inputGateShift)")
  }

  @Test("very negative input gate gives finite gradients", arguments: [1, 4])
  func veryNegativeInputGate(sequence: Int) {
    var inputs = Self.inputs(sequence: sequence, inputGateShift: 0, seed: 31)
    var gates = inputs.i.data
    gates[0] = -100
    gates[sequence] = -100
    inputs.i = Tensor(shape: inputs.i.shape, data: gates)

    let h = MLSTMCell.parallel(q: inputs.q, k: inputs.k, v: inputs.v, i: inputs.i, f: inputs.f)
    Self.expectFinite(h, "h")
    var random = MLSTMTestRandom(seed: 32)
    let dh = random.tensor(inputs.v.shape)
    let gradients = MLSTMCell.parallelBackward(
      q: inputs.q, k: inputs.k, v: inputs.v, i: inputs.i, f: inputs.f, dh: dh)
    for (name, tensor) in [("dq", gradients.dq), ("dk", gradients.dk), ("dv", gradients.dv),
                           ("di", gradients.di), ("df", gradients.df)] {
      Self.expectFinite(tensor, "\(name) at S = \(sequence)")
    }
    // Double does not overflow at exp(100), so finite differences give the true gradient.
    Self.checkParallelBackward(inputs, seed: 32, label: "i = −100, S = \(sequence)")

    let mixingGradients = MLSTMCell.mixingMatrixBackward(
      q: inputs.q, k: inputs.k, i: inputs.i, f: inputs.f,
      dMixing: random.tensor([1, 2, sequence, sequence]))
    for (name, tensor) in [("dq", mixingGradients.dq), ("dk", mixingGradients.dk),
                           ("di", mixingGradients.di), ("df", mixingGradients.df)] {
      Self.expectFinite(tensor, "mixing matrix \(name) at S = \(sequence)")
    }
  }

  @Test("mixing matrix gradients match finite differences", arguments: [Float(0), -5])
  func mixingMatrixGradients(inputGateShift: Float) {
    let inputs = Self.inputs(sequence: 7, inputGateShift: inputGateShift, seed: 41)
    var random = MLSTMTestRandom(seed: 42)
    let dMixing = random.tensor([1, 2, 7, 7])
    let gradients = MLSTMCell.mixingMatrixBackward(
      q: inputs.q, k: inputs.k, i: inputs.i, f: inputs.f, dMixing: dMixing)

    let reference = DoubleParallelReference(inputs)
    let upstream = dMixing.data.map(Double.init)
    let objective = { (model: DoubleParallelReference) in
      zip(model.mixing(), upstream).reduce(0) { $0 + $1.0 * $1.1 }
    }
    let label = "input gates shifted by \(inputGateShift)"
    Self.expectClose(gradients.dq, reference.numericalGradient(\.q, objective: objective), "dq, \(label)")
    Self.expectClose(gradients.dk, reference.numericalGradient(\.k, objective: objective), "dk, \(label)")
    Self.expectClose(gradients.di, reference.numericalGradient(\.i, objective: objective), "di, \(label)")
    Self.expectClose(gradients.df, reference.numericalGradient(\.f, objective: objective), "df, \(label)")
  }
}
