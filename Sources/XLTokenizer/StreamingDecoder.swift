/// Turns token ids into text one id at a time, returning only complete UTF-8 characters.
///
/// A character split across tokens (for example 😸 as F0 9F 98 in one token and B8 in the next)
/// is held back until its last byte arrives, so the caller never sees a U+FFFD for it. Bytes that
/// cannot start or continue a valid sequence are returned at once as U+FFFD.
public struct StreamingDecoder: Sendable {
  private let tokenizer: BPETokenizer
  private var pending: [UInt8] = []

  public init(tokenizer: BPETokenizer) {
    self.tokenizer = tokenizer
  }

  /// Adds one id and returns the text completed by it (possibly empty).
  public mutating func append(_ id: Int) -> String {
    pending.append(contentsOf: tokenizer.bytes(for: id))
    let keep = Self.incompleteTailLength(pending)
    let readyCount = pending.count - keep
    if readyCount == 0 { return "" }
    let text = String(decoding: pending[..<readyCount], as: UTF8.self)
    pending.removeFirst(readyCount)
    return text
  }

  /// Returns whatever is still held back, with U+FFFD for an unfinished character.
  public mutating func flush() -> String {
    let text = String(decoding: pending, as: UTF8.self)
    pending.removeAll()
    return text
  }

  /// Number of trailing bytes that form the start of a multi-byte sequence still missing
  /// continuation bytes: 0 when the buffer ends on a character boundary or on invalid bytes.
  static func incompleteTailLength(_ bytes: [UInt8]) -> Int {
    var continuationCount = 0
    var index = bytes.count - 1
    while index >= 0 && continuationCount < 3 && bytes[index] & 0xC0 == 0x80 {
      continuationCount += 1
      index -= 1
    }
    guard index >= 0 else { return 0 }
    let lead = bytes[index]
    let expectedLength: Int
    switch lead {
    case 0xC2...0xDF: expectedLength = 2
    case 0xE0...0xEF: expectedLength = 3
    case 0xF0...0xF4: expectedLength = 4
    default: return 0
    }
    let available = continuationCount + 1
    return available < expectedLength ? available : 0
  }
}
