/// One lexical token of a Jinja template.
struct JinjaToken: Sendable, Equatable {
  enum Kind: Sendable, Equatable {
    /// Literal template text between tags, after whitespace control.
    case text(String)
    /// `{{`
    case variableBegin
    /// `}}`
    case variableEnd
    /// `{%`
    case blockBegin
    /// `%}`
    case blockEnd
    case name(String)
    case string(String)
    case integer(Int)
    case float(Double)
    /// Operator or punctuation such as `==`, `(`, `|`.
    case symbol(String)
  }

  var kind: Kind
  /// Offset in scalars from the start of the template, for error positions.
  var offset: Int
}

/// Splits a Jinja template into tokens, with whitespace control as Hugging Face renders chat
/// templates (`trim_blocks=True`, `lstrip_blocks=True`). A `-` inside the delimiters
/// (`{%-`, `-%}`, and the same for `{{ }}` and `{# #}`) strips all whitespace on that side.
/// A block tag or comment also drops the single newline right after it and the spaces and tabs
/// before it on its line, unless it opens with `{%+`. Comments produce no tokens.
struct JinjaLexer {
  private let source: [Unicode.Scalar]
  private var position = 0
  private var tokens: [JinjaToken] = []

  /// Drops one newline at the very end of the template, as Jinja does by default
  /// (`keep_trailing_newline=False`).
  init(_ template: String) {
    var scalars = Array(template.unicodeScalars)
    if scalars.last == "\n" {
      scalars.removeLast()
      if scalars.last == "\r" { scalars.removeLast() }
    }
    source = scalars
  }

  static func tokenize(_ template: String) throws(TokenizerError) -> [JinjaToken] {
    var lexer = JinjaLexer(template)
    try lexer.run()
    return lexer.tokens
  }

  /// Line and column (both from 1) of a scalar offset, for error messages.
  static func lineAndColumn(of offset: Int, in template: String) -> (line: Int, column: Int) {
    var line = 1
    var column = 1
    for (index, scalar) in template.unicodeScalars.enumerated() {
      if index == offset { break }
      if scalar == "\n" {
        line += 1
        column = 1
      } else {
        column += 1
      }
    }
    return (line, column)
  }

  private func error(_ message: String, at offset: Int) -> TokenizerError {
    var view = String.UnicodeScalarView()
    view.append(contentsOf: source)
    let (line, column) = Self.lineAndColumn(of: offset, in: String(view))
    return .templateSyntax(message: message, line: line, column: column)
  }

  private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
    let index = position + offset
    return index < source.count ? source[index] : nil
  }

  private mutating func run() throws(TokenizerError) {
    var stripLeading = false
    var dropNewline = false
    while position < source.count {
      let textStart = position
      var tagStart = position
      while tagStart < source.count {
        if source[tagStart] == "{", tagStart + 1 < source.count,
          ["{", "%", "#"].contains(source[tagStart + 1])
        {
          break
        }
        tagStart += 1
      }
      var text = Array(source[textStart..<tagStart])

      if stripLeading {
        text = Array(text.drop { $0.properties.isWhitespace })
      } else if dropNewline {
        if text.first == "\n" {
          text.removeFirst()
        } else if text.starts(with: ["\r", "\n"]) {
          text.removeFirst(2)
        }
      }

      position = tagStart
      if tagStart < source.count {
        let opener = source[tagStart + 1]
        let modifier = tagStart + 2 < source.count ? source[tagStart + 2] : nil
        if modifier == "-" {
          while let last = text.last, last.properties.isWhitespace { text.removeLast() }
        } else if opener != "{" && modifier != "+" {
          lstripLine(&text, tagStart: tagStart, textStart: textStart)
        }
      }
      if !text.isEmpty {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: text)
        tokens.append(JinjaToken(kind: .text(String(view)), offset: textStart))
      }
      guard tagStart < source.count else { break }

      let opener = source[tagStart + 1]
      position = tagStart + 2
      if peek() == "-" || peek() == "+" { position += 1 }
      switch opener {
      case "#":
        (stripLeading, dropNewline) = try skipComment(openedAt: tagStart)
      case "{":
        tokens.append(JinjaToken(kind: .variableBegin, offset: tagStart))
        stripLeading = try lexTagBody(closer: "}", openedAt: tagStart)
        tokens.append(JinjaToken(kind: .variableEnd, offset: position - 2))
        dropNewline = false
      default:
        tokens.append(JinjaToken(kind: .blockBegin, offset: tagStart))
        stripLeading = try lexTagBody(closer: "%", openedAt: tagStart)
        tokens.append(JinjaToken(kind: .blockEnd, offset: position - 2))
        dropNewline = true
      }
    }
  }

  /// Removes the spaces and tabs before the tag at `tagStart` when they are all that precedes it
  /// on its line in the source.
  private func lstripLine(_ text: inout [Unicode.Scalar], tagStart: Int, textStart: Int) {
    var lineStart = tagStart
    while lineStart > textStart && (source[lineStart - 1] == " " || source[lineStart - 1] == "\t") {
      lineStart -= 1
    }
    guard lineStart == 0 || source[lineStart - 1] == "\n" else { return }
    var count = tagStart - lineStart
    while count > 0, let last = text.last, last == " " || last == "\t" {
      text.removeLast()
      count -= 1
    }
  }

  /// Skips to `#}`; returns (strip whitespace after, drop the next newline).
  private mutating func skipComment(openedAt start: Int) throws(TokenizerError) -> (Bool, Bool) {
    while position + 1 < source.count {
      if source[position] == "#" && source[position + 1] == "}" {
        let strip = position > 0 && source[position - 1] == "-"
        position += 2
        return (strip, true)
      }
      position += 1
    }
    throw error("comment opened here is never closed with '#}'", at: start)
  }

  /// Lexes expression tokens up to the closing `}}` or `%}`; returns whether it was `-}}`/`-%}`.
  private mutating func lexTagBody(closer: Unicode.Scalar, openedAt start: Int) throws(TokenizerError)
    -> Bool
  {
    while true {
      while let scalar = peek(), scalar.properties.isWhitespace { position += 1 }
      guard let scalar = peek() else {
        let tag = closer == "}" ? "'}}'" : "'%}'"
        throw error("tag opened here is never closed with \(tag)", at: start)
      }
      if scalar == closer && peek(1) == "}" {
        position += 2
        return false
      }
      if scalar == "-" && peek(1) == closer && peek(2) == "}" {
        position += 3
        return true
      }
      if scalar == "+" && peek(1) == closer && peek(2) == "}" {
        position += 3
        return false
      }
      try lexExpressionToken()
    }
  }

  private mutating func lexExpressionToken() throws(TokenizerError) {
    let start = position
    let scalar = source[position]

    if scalar == "'" || scalar == "\"" {
      tokens.append(JinjaToken(kind: .string(try lexString(quote: scalar)), offset: start))
      return
    }
    if scalar.properties.numericType != nil && scalar.isASCII {
      var end = position
      while end < source.count && source[end].isASCII && source[end].properties.numericType != nil {
        end += 1
      }
      var isFloat = false
      if end + 1 < source.count && source[end] == "." && source[end + 1].isASCII
        && source[end + 1].properties.numericType != nil
      {
        isFloat = true
        end += 1
        while end < source.count && source[end].isASCII && source[end].properties.numericType != nil {
          end += 1
        }
      }
      let literal = String(String.UnicodeScalarView(source[position..<end]))
      position = end
      if isFloat, let value = Double(literal) {
        tokens.append(JinjaToken(kind: .float(value), offset: start))
      } else if let value = Int(literal) {
        tokens.append(JinjaToken(kind: .integer(value), offset: start))
      } else {
        throw error("number literal '\(literal)' is out of range", at: start)
      }
      return
    }
    if scalar == "_" || (scalar.isASCII && scalar.properties.isAlphabetic) {
      var end = position
      while end < source.count,
        source[end] == "_" || (source[end].isASCII && (source[end].properties.isAlphabetic
          || source[end].properties.numericType != nil))
      {
        end += 1
      }
      tokens.append(
        JinjaToken(kind: .name(String(String.UnicodeScalarView(source[position..<end]))), offset: start))
      position = end
      return
    }
    for symbol in ["**", "//", "==", "!=", "<=", ">="] {
      let symbolScalars = Array(symbol.unicodeScalars)
      if peek() == symbolScalars[0] && peek(1) == symbolScalars[1] {
        tokens.append(JinjaToken(kind: .symbol(symbol), offset: start))
        position += 2
        return
      }
    }
    if "+-*/%~<>=()[]{}.,:|".unicodeScalars.contains(scalar) {
      tokens.append(JinjaToken(kind: .symbol(String(scalar)), offset: start))
      position += 1
      return
    }
    throw error("unexpected character '\(scalar)' inside a tag", at: start)
  }

  private mutating func lexString(quote: Unicode.Scalar) throws(TokenizerError) -> String {
    let start = position
    position += 1
    var value = String.UnicodeScalarView()
    while let scalar = peek() {
      position += 1
      if scalar == quote {
        return String(value)
      }
      if scalar == "\\", let escaped = peek() {
        position += 1
        switch escaped {
        case "n": value.append("\n")
        case "t": value.append("\t")
        case "r": value.append("\r")
        case "\\", "'", "\"": value.append(escaped)
        default:
          value.append("\\")
          value.append(escaped)
        }
      } else {
        value.append(scalar)
      }
    }
    throw error("string literal is never closed", at: start)
  }
}
