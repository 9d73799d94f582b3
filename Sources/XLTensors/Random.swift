import Foundation

/// SplitMix64: a small, fast generator whose stream is fixed by its seed on every platform.
public struct SplitMix64: RandomNumberGenerator, Sendable {
  private var state: UInt64

  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// A uniform draw in [0, 1) with 53 random bits.
  public mutating func nextUnit() -> Double {
    Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
  }
}

extension SplitMix64 {
  /// A draw from the standard normal distribution (Box–Muller).
  public mutating func nextNormal() -> Float {
    let u1 = max(nextUnit(), 1e-300)
    let u2 = nextUnit()
    return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
  }
}
