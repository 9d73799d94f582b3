import Foundation

/// SplitMix64, a 64-bit pseudo-random generator with a fixed, documented output sequence.
///
/// Sampling, initialization and training use it instead of the system generator, so that a
/// seed gives the same draws on every platform and Swift version. Algorithm: Steele, Lea and Flood, "Fast splittable
/// pseudorandom number generators" (OOPSLA 2014); the constants are the published ones.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable, Codable {
  public var state: UInt64

  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    return Self.mix(state)
  }

  /// Applies the SplitMix64 finalizer, a bijective 64-bit hash usable on its own.
  public static func mix(_ value: UInt64) -> UInt64 {
    var z = value
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Draws a uniform Double in [0, 1) from the top 53 bits of the next output.
  public mutating func nextDouble() -> Double {
    Double(next() >> 11) * 0x1.0p-53
  }

  /// Draws a uniform integer in `0..<bound` without modulo bias (Lemire's multiply-and-reject).
  public mutating func nextIndex(below bound: Int) -> Int {
    precondition(bound > 0, "empty range")
    let limit = UInt64(bound)
    var product = next().multipliedFullWidth(by: limit)
    if product.low < limit {
      let threshold = (0 &- limit) % limit
      while product.low < threshold {
        product = next().multipliedFullWidth(by: limit)
      }
    }
    return Int(product.high)
  }
}

extension SplitMix64 {
  /// Draws from the standard normal distribution (Box–Muller).
  public mutating func nextNormal() -> Float {
    let u1 = max(nextDouble(), 1e-300)
    let u2 = nextDouble()
    return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
  }
}
