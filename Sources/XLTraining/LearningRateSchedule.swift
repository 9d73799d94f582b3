import Foundation

/// Learning-rate schedules, each with a linear warmup.
///
/// `step` counts updates from 0. During warmup (`step < warmup`) every schedule returns
/// `peak · (step + 1) / warmup`, so the first update already moves and update `warmup − 1`
/// runs at the peak. After warmup, with `total` the number of updates:
/// - `constant`: `peak`.
/// - `linear`: falls linearly from `peak` at `warmup` to 0 at `total`.
/// - `cosine`: `peak · (1 + cos(π · progress)) / 2`, progress from 0 at `warmup` to 1 at `total`.
/// - `warmupStableDecay(warmup, decayFraction)`: `peak` until the last
///   `round(decayFraction · total)` updates, then falls linearly to 0 at `total`.
/// Steps at or past `total` return 0 for the decaying schedules.
public enum LearningRateSchedule: Sendable, Equatable, Codable, CustomStringConvertible {
  case constant(warmup: Int)
  case linear(warmup: Int)
  case cosine(warmup: Int)
  case warmupStableDecay(warmup: Int, decayFraction: Double)

  public var warmup: Int {
    switch self {
    case .constant(let warmup), .linear(let warmup), .cosine(let warmup),
         .warmupStableDecay(let warmup, _):
      return warmup
    }
  }

  public func learningRate(step: Int, totalSteps: Int, peak: Float) -> Float {
    let warmup = max(0, self.warmup)
    if step < warmup { return peak * Float(step + 1) / Float(warmup) }
    if case .constant = self { return peak }
    if step >= totalSteps { return 0 }

    switch self {
    case .constant:
      return peak
    case .linear:
      let span = max(1, totalSteps - warmup)
      return peak * Float(totalSteps - step) / Float(span)
    case .cosine:
      let span = max(1, totalSteps - warmup)
      let progress = Double(step - warmup) / Double(span)
      return peak * Float((1 + cos(Double.pi * progress)) / 2)
    case .warmupStableDecay(_, let decayFraction):
      let decaySteps = Int((decayFraction * Double(totalSteps)).rounded())
      let decayStart = max(warmup, totalSteps - decaySteps)
      if step < decayStart { return peak }
      let span = max(1, totalSteps - decayStart)
      return peak * Float(totalSteps - step) / Float(span)
    }
  }

  public var description: String {
    switch self {
    case .constant(let warmup): return "constant (warmup \(warmup))"
    case .linear(let warmup): return "linear (warmup \(warmup))"
    case .cosine(let warmup): return "cosine (warmup \(warmup))"
    case .warmupStableDecay(let warmup, let decayFraction):
      return "warmup-stable-decay (warmup \(warmup), decay fraction \(decayFraction))"
    }
  }
}
