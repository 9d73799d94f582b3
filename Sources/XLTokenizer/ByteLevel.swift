/// The GPT-2 byte-to-unicode alphabet: every byte gets a printable scalar so that byte-level BPE
/// vocabularies can be stored as text. Bytes 0x21–0x7E, 0xA1–0xAC and 0xAE–0xFF map to the
/// scalar with the same value. The other 68 bytes map, in increasing order, to U+0100 onwards,
/// so the space 0x20 becomes "Ġ" (U+0120) and the newline 0x0A becomes "Ċ" (U+010A).
enum ByteLevel {
  /// Scalar value for each byte, indexed by byte.
  static let byteToScalar: [UInt32] = {
    var table = [UInt32](repeating: 0, count: 256)
    var next: UInt32 = 256
    for byte in 0..<256 {
      let printable = (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte)
        || (0xAE...0xFF).contains(byte)
      if printable {
        table[byte] = UInt32(byte)
      } else {
        table[byte] = next
        next += 1
      }
    }
    return table
  }()

  /// Inverse of `byteToScalar`, keyed by scalar value.
  static let scalarToByte: [UInt32: UInt8] = {
    var inverse: [UInt32: UInt8] = [:]
    for (byte, scalar) in byteToScalar.enumerated() {
      inverse[scalar] = UInt8(byte)
    }
    return inverse
  }()

  /// Returns the token-string form of raw bytes.
  static func encode(_ bytes: some Sequence<UInt8>) -> String {
    var text = String.UnicodeScalarView()
    for byte in bytes {
      text.append(Unicode.Scalar(byteToScalar[Int(byte)])!)
    }
    return String(text)
  }

  /// Returns the raw bytes of a token string. Scalars outside the alphabet pass through as their
  /// own UTF-8 bytes, so tokens that were never byte-encoded still decode to their text.
  static func decode(_ token: String) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(token.utf8.count)
    for scalar in token.unicodeScalars {
      if let byte = scalarToByte[scalar.value] {
        bytes.append(byte)
      } else {
        bytes.append(contentsOf: String(scalar).utf8)
      }
    }
    return bytes
  }
}
