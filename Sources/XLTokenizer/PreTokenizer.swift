/// Character class used by the GPT-2 split pattern.
enum ScalarClass: UInt8 {
  /// `\p{L}`: general categories Lu, Ll, Lt, Lm, Lo.
  case letter
  /// `\p{N}`: general categories Nd, Nl, No (Rust's `char::is_numeric`).
  case number
  /// `\s`: the Unicode White_Space property.
  case whitespace
  /// Everything else, including marks (Mn, Mc, Me), punctuation, symbols and format characters.
  case other

  private static let asciiTable: [ScalarClass] = (0..<128).map { value in
    classifySlow(Unicode.Scalar(UInt8(value)))
  }

  static func of(_ scalar: Unicode.Scalar) -> ScalarClass {
    if scalar.value < 128 {
      return asciiTable[Int(scalar.value)]
    }
    return classifySlow(scalar)
  }

  private static func classifySlow(_ scalar: Unicode.Scalar) -> ScalarClass {
    let properties = scalar.properties
    if properties.isWhitespace {
      return .whitespace
    }
    switch properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
      return .letter
    case .decimalNumber, .letterNumber, .otherNumber:
      return .number
    default:
      return .other
    }
  }
}

/// Splits text into the pieces that BPE encodes one by one.
///
/// `gpt2` applies the GPT-2 pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
/// `smollm` first isolates every numeric scalar (`\p{N}`) as its own piece and then applies the
/// GPT-2 pattern to each stretch between them, as Hugging Face's
/// `Sequence([Digits(individual_digits=True), ByteLevel(use_regex=True)])` does.
/// The scanner is hand-written over Unicode scalars and follows the regex's leftmost-first
/// alternation, including the backtracking of `\s+(?!\S)`.
struct PreTokenizer: Sendable {
  enum Kind: Sendable {
    case gpt2
    case smollm
  }

  let kind: Kind

  init(name: String) throws(TokenizerError) {
    switch name.lowercased() {
    case "smollm": kind = .smollm
    case "gpt2", "gpt-2": kind = .gpt2
    default: throw .unsupportedPreTokenizer(name)
    }
  }

  /// Appends the pieces of `scalars[range]` to `pieces` as index ranges into `scalars`.
  /// The pieces cover the range exactly, in order.
  func split(
    _ scalars: UnsafeBufferPointer<Unicode.Scalar>, classes: UnsafeBufferPointer<ScalarClass>,
    range: Range<Int>, into pieces: inout [Range<Int>]
  ) {
    guard kind == .smollm else {
      Self.splitGPT2(scalars, classes: classes, range: range, into: &pieces)
      return
    }
    var start = range.lowerBound
    for index in range where classes[index] == .number {
      if start < index {
        Self.splitGPT2(scalars, classes: classes, range: start..<index, into: &pieces)
      }
      pieces.append(index..<(index + 1))
      start = index + 1
    }
    if start < range.upperBound {
      Self.splitGPT2(scalars, classes: classes, range: start..<range.upperBound, into: &pieces)
    }
  }

  /// Applies the GPT-2 pattern to one stretch. The end of `range` acts as the end of the text,
  /// so `(?!\S)` succeeds there.
  static func splitGPT2(
    _ scalars: UnsafeBufferPointer<Unicode.Scalar>, classes: UnsafeBufferPointer<ScalarClass>,
    range: Range<Int>, into pieces: inout [Range<Int>]
  ) {
    let end = range.upperBound
    var index = range.lowerBound
    while index < end {
      let length = matchLength(scalars, classes: classes, at: index, end: end)
      pieces.append(index..<(index + length))
      index += length
    }
  }

  /// Length in scalars of the pattern's match at `start`; always at least 1.
  private static func matchLength(
    _ scalars: UnsafeBufferPointer<Unicode.Scalar>, classes: UnsafeBufferPointer<ScalarClass>,
    at start: Int, end: Int
  ) -> Int {
    let first = scalars[start]

    // 's 't 're 've 'm 'll 'd (case-sensitive, as in the pattern).
    if first == "'" && start + 1 < end {
      let second = scalars[start + 1]
      if second == "s" || second == "t" || second == "m" || second == "d" {
        return 2
      }
      if start + 2 < end {
        let third = scalars[start + 2]
        if (second == "r" && third == "e") || (second == "v" && third == "e")
          || (second == "l" && third == "l")
        {
          return 3
        }
      }
    }

    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional U+0020, then a run of one class.
    // A space cannot start the run itself (it is \s), so the three branches reduce to
    // looking at the scalar after the optional space.
    let body = first == " " ? start + 1 : start
    if body < end {
      let runClass = classes[body]
      if runClass != .whitespace {
        var index = body + 1
        while index < end && classes[index] == runClass {
          index += 1
        }
        return index - start
      }
    }

    // `\s+(?!\S)` then `\s+`. `first` is whitespace here: a non-space scalar would have
    // matched above.
    var runEnd = start + 1
    while runEnd < end && classes[runEnd] == .whitespace {
      runEnd += 1
    }
    if runEnd == end {
      return runEnd - start
    }
    // A non-space follows the run, so `\s+(?!\S)` backtracks one scalar and leaves the last
    // whitespace to start the next piece. A run of one scalar fails there, and `\s+` takes it.
    let length = runEnd - start
    return length >= 2 ? length - 1 : 1
  }
}

extension PreTokenizer {
  /// Returns the pieces of `text` as strings (no special-token handling); for tests and
  /// debugging, since `BPETokenizer.encode` works on index ranges.
  func pieces(of text: String) -> [String] {
    let scalars = Array(text.unicodeScalars)
    let classes = scalars.map(ScalarClass.of)
    var ranges: [Range<Int>] = []
    scalars.withUnsafeBufferPointer { scalarBuffer in
      classes.withUnsafeBufferPointer { classBuffer in
        split(scalarBuffer, classes: classBuffer, range: 0..<scalars.count, into: &ranges)
      }
    }
    return ranges.map { range in
      var view = String.UnicodeScalarView()
      view.append(contentsOf: scalars[range])
      return String(view)
    }
  }
}
