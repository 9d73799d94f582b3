import Foundation
import XLTensors
@testable import XLModels

/// A seeded SplitMix64 generator with normal samples (Box–Muller), for reproducible inputs.
struct MLSTMTestRandom {
  private var state: UInt64

  init(seed: UInt64) { state = seed }

  mutating func nextUInt64() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Uniform in (0, 1).
  mutating func uniform() -> Double {
    (Double(nextUInt64() >> 11) + 0.5) / Double(1 << 53)
  }

  mutating func normal() -> Float {
    let radius = (-2 * log(uniform())).squareRoot()
    return Float(radius * cos(2 * Double.pi * uniform()))
  }

  mutating func tensor(_ shape: [Int], scale: Float = 1, shift: Float = 0) -> Tensor {
    let count = shape.reduce(1, *)
    return Tensor(shape: shape, data: (0..<count).map { _ in normal() * scale + shift })
  }
}

/// Random cell inputs shaped like the official kernels' fixtures: forget gates near 3, so
/// the state decays slowly.
struct MLSTMInputs {
  var q, k, v, i, f: Tensor

  init(batch: Int, heads: Int, sequence: Int, keyDim: Int, valueDim: Int,
       seed: UInt64, gateScale: Float = 1) {
    var random = MLSTMTestRandom(seed: seed)
    q = random.tensor([batch, heads, sequence, keyDim])
    k = random.tensor([batch, heads, sequence, keyDim])
    v = random.tensor([batch, heads, sequence, valueDim])
    i = random.tensor([batch, heads, sequence], scale: gateScale)
    f = random.tensor([batch, heads, sequence], scale: gateScale, shift: 3)
  }

  /// Tokens `range` of every input.
  func slice(_ range: Range<Int>) -> MLSTMInputs {
    var copy = self
    copy.q = sliceSequence(q, range)
    copy.k = sliceSequence(k, range)
    copy.v = sliceSequence(v, range)
    copy.i = sliceSequence(i, range)
    copy.f = sliceSequence(f, range)
    return copy
  }
}

/// Tokens `range` of a (B, NH, S) or (B, NH, S, D) tensor.
func sliceSequence(_ tensor: Tensor, _ range: Range<Int>) -> Tensor {
  let (heads, sequence) = (tensor.shape[0] * tensor.shape[1], tensor.shape[2])
  let width = tensor.rank == 4 ? tensor.shape[3] : 1
  var data: [Float] = []
  data.reserveCapacity(heads * range.count * width)
  for head in 0..<heads {
    let base = head * sequence * width
    data += tensor.data[(base + range.lowerBound * width)..<(base + range.upperBound * width)]
  }
  var shape = tensor.shape
  shape[2] = range.count
  return Tensor(shape: shape, data: data)
}

/// Joins (B, NH, S_j, D) tensors along S.
func concatenateSequence(_ parts: [Tensor]) -> Tensor {
  let first = parts[0]
  let heads = first.shape[0] * first.shape[1]
  let width = first.shape[3]
  let total = parts.reduce(0) { $0 + $1.shape[2] }
  var data: [Float] = []
  for head in 0..<heads {
    for part in parts {
      let length = part.shape[2] * width
      data += part.data[(head * length)..<((head + 1) * length)]
    }
  }
  return Tensor(shape: [first.shape[0], first.shape[1], total, width], data: data)
}

/// max|a − b| / max(1, max|b|): the norm-relative error used by every mLSTM check.
func relativeError(_ actual: Tensor, _ expected: Tensor) -> Float {
  precondition(actual.count == expected.count, "\(actual.shape) vs \(expected.shape)")
  var worst: Float = 0
  var largest: Float = 1
  for index in 0..<expected.count {
    let difference = abs(actual.data[index] - expected.data[index])
    worst = difference.isNaN ? .infinity : max(worst, difference)
    largest = max(largest, abs(expected.data[index]))
  }
  return worst / largest
}
