/// Conversions between float32 and the 16-bit formats IEEE binary16 (F16) and bfloat16 (BF16).
///
/// Written with bit operations so they behave the same on every platform, including those
/// without Swift's `Float16`. Narrowing rounds to nearest, ties to even; NaN stays NaN.
enum HalfPrecision {
  /// Widens IEEE binary16 bits to float32 exactly (subnormals, infinities and NaN included).
  @inline(__always)
  static func float(fromHalf bits: UInt16) -> Float {
    let sign = UInt32(bits & 0x8000) << 16
    let exponent = UInt32(bits >> 10) & 0x1f
    let mantissa = UInt32(bits & 0x3ff)
    if exponent == 0 {
      // Zero or subnormal: mantissa · 2^-24, exact in float32.
      let magnitude = Float(mantissa) * 0x1p-24
      return sign == 0 ? magnitude : -magnitude
    }
    if exponent == 31 {
      return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
  }

  /// Narrows float32 to IEEE binary16 bits, rounding to nearest even; overflow gives infinity.
  static func halfBits(from value: Float) -> UInt16 {
    let bits = value.bitPattern
    let sign = UInt16((bits >> 16) & 0x8000)
    let exponent = Int((bits >> 23) & 0xff)
    var mantissa = bits & 0x7f_ffff
    if exponent == 0xff {
      return sign | 0x7c00 | (mantissa != 0 ? 0x200 : 0)
    }
    let halfExponent = exponent - 127 + 15
    if halfExponent <= 0 {
      // Result is subnormal or zero: shift the full significand right and round.
      if halfExponent < -10 { return sign }
      mantissa |= 0x80_0000
      let shift = UInt32(14 - halfExponent)
      let kept = mantissa >> shift
      let remainder = mantissa & ((1 << shift) - 1)
      let halfway = UInt32(1) << (shift - 1)
      var result = kept
      if remainder > halfway || (remainder == halfway && (kept & 1) == 1) { result += 1 }
      return sign | UInt16(result)
    }
    if halfExponent >= 31 { return sign | 0x7c00 }
    var result = (UInt32(halfExponent) << 10) | (mantissa >> 13)
    let remainder = mantissa & 0x1fff
    // A carry out of the mantissa correctly bumps the exponent, up to infinity (0x7c00).
    if remainder > 0x1000 || (remainder == 0x1000 && (result & 1) == 1) { result += 1 }
    return sign | UInt16(min(result, 0x7c00))
  }

  /// Widens bfloat16 bits to float32 exactly.
  @inline(__always)
  static func float(fromBFloat bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
  }

  /// Narrows float32 to bfloat16 bits, rounding to nearest even; NaN stays a quiet NaN.
  static func bfloatBits(from value: Float) -> UInt16 {
    let bits = value.bitPattern
    if value.isNaN { return UInt16(bits >> 16) | 0x40 }
    let rounding = 0x7fff + ((bits >> 16) & 1)
    return UInt16((bits &+ rounding) >> 16)
  }
}
