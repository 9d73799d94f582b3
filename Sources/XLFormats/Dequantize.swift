/// Conversion of ggml tensor data to float32, following ggml's reference `dequantize_row_*`
/// functions (ggml-quants.c) in layout and in the order of float operations.
///
/// Block layouts (bytes, little-endian; `d`, `m`, `dmin` are IEEE f16):
///
///     Q8_0  (32 values, 34 B):  d, qs[32] int8              x = d·q
///     Q4_0  (32 values, 18 B):  d, qs[16]                   x[j] = d·(lo(qs[j]) − 8), x[j+16] = d·(hi(qs[j]) − 8)
///     Q4_1  (32 values, 20 B):  d, m, qs[16]                x[j] = d·lo(qs[j]) + m, x[j+16] = d·hi(qs[j]) + m
///     Q4_K (256 values, 144 B): d, dmin, scales[12], qs[128]
///     Q5_K (256 values, 176 B): d, dmin, scales[12], qh[32], qs[128]
///     Q6_K (256 values, 210 B): ql[128], qh[64], scales[16] int8, d
///
/// Q4_K and Q5_K split a super-block into 8 sub-blocks of 32, each with a 6-bit scale and min
/// packed in `scales` (see `scaleAndMin`). A value is `d·scale·q − dmin·min`. Q6_K has 16
/// sub-blocks of 16 with int8 scales, and a value is `d·scale·(q − 32)` for 6-bit `q`.
enum Dequantize {
  /// Converts `bytes` of `type` into `output` (whose count is the element count).
  /// Precondition: `type.isDequantizable` and `bytes.count` equals the tensor's byte count.
  static func run(_ type: GGMLType, bytes: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Float>) {
    precondition(bytes.count == output.count / type.blockSize * type.blockBytes, "byte count disagrees with element count")
    let blocks = output.count / type.blockSize
    switch type {
    case .f32:
      for index in 0..<output.count { output[index] = Float(bitPattern: word32(bytes, 4 * index)) }
    case .f16:
      for index in 0..<output.count { output[index] = half(bytes, 2 * index) }
    case .bf16:
      for index in 0..<output.count { output[index] = HalfPrecision.float(fromBFloat: word16(bytes, 2 * index)) }
    case .q8_0:
      for block in 0..<blocks { q8_0(bytes, block * 34, output, block * 32) }
    case .q4_0:
      for block in 0..<blocks { q4_0(bytes, block * 18, output, block * 32) }
    case .q4_1:
      for block in 0..<blocks { q4_1(bytes, block * 20, output, block * 32) }
    case .q4_K:
      for block in 0..<blocks { q4_K(bytes, block * 144, output, block * 256) }
    case .q5_K:
      for block in 0..<blocks { q5_K(bytes, block * 176, output, block * 256) }
    case .q6_K:
      for block in 0..<blocks { q6_K(bytes, block * 210, output, block * 256) }
    default:
      preconditionFailure("\(type.name) cannot be dequantized")
    }
  }

  @inline(__always)
  static func word16(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
    UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
  }

  @inline(__always)
  static func word32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
    UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
  }

  @inline(__always)
  static func half(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> Float {
    HalfPrecision.float(fromHalf: word16(bytes, offset))
  }

  private static func q8_0(
    _ bytes: UnsafeRawBufferPointer, _ start: Int, _ output: UnsafeMutableBufferPointer<Float>, _ first: Int
  ) {
    let d = half(bytes, start)
    for j in 0..<32 {
      output[first + j] = Float(Int8(bitPattern: bytes[start + 2 + j])) * d
    }
  }

  private static func q4_0(
    _ bytes: UnsafeRawBufferPointer, _ start: Int, _ output: UnsafeMutableBufferPointer<Float>, _ first: Int
  ) {
    let d = half(bytes, start)
    for j in 0..<16 {
      let byte = bytes[start + 2 + j]
      output[first + j] = Float(Int(byte & 0x0f) - 8) * d
      output[first + j + 16] = Float(Int(byte >> 4) - 8) * d
    }
  }

  private static func q4_1(
    _ bytes: UnsafeRawBufferPointer, _ start: Int, _ output: UnsafeMutableBufferPointer<Float>, _ first: Int
  ) {
    let d = half(bytes, start)
    let m = half(bytes, start + 2)
    for j in 0..<16 {
      let byte = bytes[start + 4 + j]
      output[first + j] = Float(byte & 0x0f) * d + m
      output[first + j + 16] = Float(byte >> 4) * d + m
    }
  }

  /// The 6-bit scale and min of sub-block `j` (0..<8) from the 12 packed bytes at `offset`.
  ///
  /// Bytes 0–3 contain scales 0–3 in their low 6 bits, and bytes 4–7 contain mins 0–3. For
  /// sub-blocks 4–7 the low 4 bits come from bytes 8–11 (scale low nibble, min high nibble).
  /// Their top 2 bits come from the spare high bits of bytes 0–3 (scale) and 4–7 (min).
  @inline(__always)
  static func scaleAndMin(_ bytes: UnsafeRawBufferPointer, _ offset: Int, _ j: Int) -> (scale: UInt8, min: UInt8) {
    if j < 4 {
      return (bytes[offset + j] & 63, bytes[offset + j + 4] & 63)
    }
    let scale = (bytes[offset + j + 4] & 0x0f) | ((bytes[offset + j - 4] >> 6) << 4)
    let min = (bytes[offset + j + 4] >> 4) | ((bytes[offset + j] >> 6) << 4)
    return (scale, min)
  }

  private static func q4_K(
    _ bytes: UnsafeRawBufferPointer, _ start: Int, _ output: UnsafeMutableBufferPointer<Float>, _ first: Int
  ) {
    let d = half(bytes, start)
    let dmin = half(bytes, start + 2)
    let scales = start + 4
    var quants = start + 16
    var out = first
    for pair in 0..<4 {
      let (scale1, min1) = scaleAndMin(bytes, scales, 2 * pair)
      let (scale2, min2) = scaleAndMin(bytes, scales, 2 * pair + 1)
      let d1 = d * Float(scale1), m1 = dmin * Float(min1)
      let d2 = d * Float(scale2), m2 = dmin * Float(min2)
      for l in 0..<32 { output[out + l] = d1 * Float(bytes[quants + l] & 0x0f) - m1 }
      for l in 0..<32 { output[out + 32 + l] = d2 * Float(bytes[quants + l] >> 4) - m2 }
      quants += 32
      out += 64
    }
  }

  private static func q5_K(
    _ bytes: UnsafeRawBufferPointer, _ start: Int, _ output: UnsafeMutableBufferPointer<Float>, _ first: Int
  ) {
    let d = half(bytes, start)
    let dmin = half(bytes, start + 2)
    let scales = start + 4
    let highBits = start + 16
    var quants = start + 48
    var out = first
    var mask1: UInt8 = 1, mask2: UInt8 = 2
    for pair in 0..<4 {
      let (scale1, min1) = scaleAndMin(bytes, scales, 2 * pair)
      let (scale2, min2) = scaleAndMin(bytes, scales, 2 * pair + 1)
      let d1 = d * Float(scale1), m1 = dmin * Float(min1)
      let d2 = d * Float(scale2), m2 = dmin * Float(min2)
      for l in 0..<32 {
        let high: UInt8 = bytes[highBits + l] & mask1 != 0 ? 16 : 0
        output[out + l] = d1 * Float((bytes[quants + l] & 0x0f) + high) - m1
      }
      for l in 0..<32 {
        let high: UInt8 = bytes[highBits + l] & mask2 != 0 ? 16 : 0
        output[out + 32 + l] = d2 * Float((bytes[quants + l] >> 4) + high) - m2
      }
      quants += 32
      out += 64
      mask1 <<= 2
      mask2 <<= 2
    }
  }

  private static func q6_K(
    _ bytes: UnsafeRawBufferPointer, _ start: Int, _ output: UnsafeMutableBufferPointer<Float>, _ first: Int
  ) {
    let d = half(bytes, start + 208)
    var low = start
    var high = start + 128
    var scales = start + 192
    var out = first
    for _ in 0..<2 {
      for l in 0..<32 {
        let group = l / 16
        let lowA = bytes[low + l], lowB = bytes[low + l + 32], highByte = bytes[high + l]
        let q1 = Int((lowA & 0x0f) | ((highByte & 3) << 4)) - 32
        let q2 = Int((lowB & 0x0f) | (((highByte >> 2) & 3) << 4)) - 32
        let q3 = Int((lowA >> 4) | (((highByte >> 4) & 3) << 4)) - 32
        let q4 = Int((lowB >> 4) | (((highByte >> 6) & 3) << 4)) - 32
        output[out + l] = d * Float(Int8(bitPattern: bytes[scales + group])) * Float(q1)
        output[out + l + 32] = d * Float(Int8(bitPattern: bytes[scales + group + 2])) * Float(q2)
        output[out + l + 64] = d * Float(Int8(bitPattern: bytes[scales + group + 4])) * Float(q3)
        output[out + l + 96] = d * Float(Int8(bitPattern: bytes[scales + group + 6])) * Float(q4)
      }
      out += 128
      low += 64
      high += 32
      scales += 8
    }
  }
}
