import CKernels
import Foundation

/// Element-wise and row-wise kernels shared by the teacher and the student.
///
/// Shapes use one vocabulary throughout the package: B batch, S sequence, D model width,
/// NH query heads, NKV key/value heads, DH head width, V vocabulary. Every kernel works on
/// row-major buffers in place or into a caller-provided output.
public enum Kernels {
  /// RMSNorm over `rows` rows of width `dim`: `y = w · x / sqrt(mean(x²) + eps)`.
  public static func rmsNorm(
    _ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: UnsafePointer<Float>, eps: Float,
    into y: UnsafeMutablePointer<Float>
  ) {
    for row in 0..<rows {
      let input = x + row * dim
      let output = y + row * dim
      var sumOfSquares: Float = 0
      for index in 0..<dim { sumOfSquares += input[index] * input[index] }
      let scale = 1 / (sumOfSquares / Float(dim) + eps).squareRoot()
      for index in 0..<dim { output[index] = weight[index] * (input[index] * scale) }
    }
  }

  /// Σ x[i] over `count` elements, split over the threads of `WeightMatrix.threadCount` like
  /// decode's products; `bench --kernels` times it as the memory read bandwidth bound.
  public static func parallelSum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    WeightMatrix.matchPoolThreads()
    return xl_sum_f32(x, count)
  }

  /// SwiGLU's gating: `gate[i] = silu(gate[i]) · up[i]` for `count` elements, with the
  /// vectorized exp of `CKernels` (relative error below 1e-6).
  public static func siluMultiply(
    gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int
  ) {
    xl_silu_multiply(gate, up, count)
  }

  /// `x[i] = exp(x[i])` for `count` elements with the vectorized exp of `CKernels` (relative
  /// error below 1e-6; inputs below −87.3 give about 1.2e-38 instead of a smaller number).
  public static func expInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    xl_exp_inplace(x, count)
  }

  /// The plain-loop SwiGLU gating with libm's exp, the reference of `siluMultiply`.
  public static func referenceSiluMultiply(
    gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int
  ) {
    for index in 0..<count {
      let g = gate[index]
      gate[index] = g / (1 + exp(-g)) * up[index]
    }
  }

  /// Softmax of one row in place, stable against large values; the exponentials use the
  /// vectorized exp of `CKernels`.
  public static func softmax(_ row: UnsafeMutablePointer<Float>, count: Int) {
    var largest = -Float.infinity
    for index in 0..<count { largest = max(largest, row[index]) }
    for index in 0..<count { row[index] -= largest }
    xl_exp_inplace(row, count)
    var total: Float = 0
    for index in 0..<count { total += row[index] }
    let inverse = 1 / total
    for index in 0..<count { row[index] *= inverse }
  }

  /// Log-softmax of one row into `output` (double accumulation of the normalizer).
  public static func logSoftmax(
    _ row: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>
  ) {
    var largest = -Float.infinity
    for index in 0..<count { largest = max(largest, row[index]) }
    var total: Double = 0
    for index in 0..<count { total += Double(exp(row[index] - largest)) }
    let logNormalizer = largest + Float(log(total))
    for index in 0..<count { output[index] = row[index] - logNormalizer }
  }
}

/// Rotary position embeddings in the Hugging Face "rotate half" convention.
///
/// For a head vector x of width DH, pairs (x[j], x[j + DH/2]) rotate by angle
/// `position · theta^(−2j/DH)`.
public struct RotaryEmbedding: Sendable {
  public let headDim: Int
  public let theta: Double
  let inverseFrequencies: [Double]

  public init(headDim: Int, theta: Double) {
    self.headDim = headDim
    self.theta = theta
    let half = headDim / 2
    inverseFrequencies = (0..<half).map { 1 / pow(theta, Double(2 * $0) / Double(headDim)) }
  }

  /// Returns the cosines and sines `apply` uses at positions `0..<positions`, each
  /// (positions, DH/2), for callers that rotate many tokens at the same positions.
  public func angleTable(positions: Int) -> (cosines: [Float], sines: [Float]) {
    let half = headDim / 2
    var cosines = [Float](repeating: 0, count: positions * half)
    var sines = cosines
    for position in 0..<positions {
      for j in 0..<half {
        let angle = Double(position) * inverseFrequencies[j]
        cosines[position * half + j] = Float(cos(angle))
        sines[position * half + j] = Float(sin(angle))
      }
    }
    return (cosines, sines)
  }

  /// Rotates `heads` consecutive head vectors of one token in place by the angles of one row
  /// of `angleTable`: cosines and sines (DH/2) each. Gives the same result as `apply` at that
  /// row's position.
  public func apply(
    _ x: UnsafeMutablePointer<Float>, heads: Int, cosines: UnsafePointer<Float>, sines: UnsafePointer<Float>
  ) {
    let half = headDim / 2
    for head in 0..<heads {
      let base = x + head * headDim
      for j in 0..<half {
        let first = base[j]
        let second = base[j + half]
        base[j] = first * cosines[j] - second * sines[j]
        base[j + half] = second * cosines[j] + first * sines[j]
      }
    }
  }

  /// Rotates `heads` consecutive head vectors of one token at `position`, in place.
  public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
    let half = headDim / 2
    for j in 0..<half {
      let angle = Double(position) * inverseFrequencies[j]
      let cosine = Float(cos(angle))
      let sine = Float(sin(angle))
      for head in 0..<heads {
        let base = x + head * headDim
        let first = base[j]
        let second = base[j + half]
        base[j] = first * cosine - second * sine
        base[j + half] = second * cosine + first * sine
      }
    }
  }
}
