import Testing
import XLTensors
@testable import XLTraining

/// Deterministic pseudo-random floats in [−scale, scale] for test inputs.
func randomFloats(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
  var generator = SplitMix64(seed: seed)
  return (0..<count).map { _ in (Float(generator.nextDouble()) * 2 - 1) * scale }
}

/// Compares an analytic gradient with central finite differences of `loss`.
///
/// Each element of `input` moves by ±h in turn; the numeric derivative
/// `(loss(x + h) − loss(x − h)) / 2h` is taken with the loss in Double. Returns the worst error
/// `|analytic − numeric| / max(1, |numeric|)`.
func worstGradientError(
  input: [Float], analytic: [Float], h: Float = 1e-2, loss: ([Float]) -> Double
) -> Double {
  precondition(input.count == analytic.count)
  var worst: Double = 0
  var probe = input
  for i in 0..<input.count {
    probe[i] = input[i] + h
    let plus = loss(probe)
    probe[i] = input[i] - h
    let minus = loss(probe)
    probe[i] = input[i]
    let numeric = (plus - minus) / (2 * Double(h))
    let error = abs(Double(analytic[i]) - numeric) / max(1, abs(numeric))
    worst = max(worst, error)
  }
  return worst
}

/// `Σ output · weights` in Double: a scalar loss whose gradient with respect to the output is
/// `weights`, so it checks a backward pass fed `outputGrad = weights`.
func projected(_ output: [Float], _ weights: [Float]) -> Double {
  var total: Double = 0
  for i in 0..<output.count { total += Double(output[i]) * Double(weights[i]) }
  return total
}
