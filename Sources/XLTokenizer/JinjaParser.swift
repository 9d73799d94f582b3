/// Constant values written in a template.
enum JinjaLiteral: Sendable {
  case none
  case bool(Bool)
  case integer(Int)
  case float(Double)
  case string(String)
}

/// Expression tree of the supported Jinja subset.
indirect enum JinjaExpression: Sendable {
  case literal(JinjaLiteral)
  case variable(String)
  case list([JinjaExpression])
  case dictionary([(JinjaExpression, JinjaExpression)])
  case attribute(JinjaExpression, String)
  case index(JinjaExpression, JinjaExpression)
  case slice(JinjaExpression, start: JinjaExpression?, stop: JinjaExpression?, step: JinjaExpression?)
  case call(JinjaExpression, arguments: [JinjaExpression], keywords: [(String, JinjaExpression)])
  case filter(JinjaExpression, name: String, arguments: [JinjaExpression])
  case test(JinjaExpression, name: String, negated: Bool, arguments: [JinjaExpression])
  case not(JinjaExpression)
  case negate(JinjaExpression)
  /// Binary operator: `and or + - * / // % ** ~ == != < > <= >= in` and `not in`.
  case binary(String, JinjaExpression, JinjaExpression)
  case conditional(value: JinjaExpression, condition: JinjaExpression, otherwise: JinjaExpression?)
}

/// Statement tree of the supported Jinja subset.
indirect enum JinjaNode: Sendable {
  case text(String)
  case output(JinjaExpression)
  case ifChain(branches: [(JinjaExpression, [JinjaNode])], otherwise: [JinjaNode])
  case forLoop(
    targets: [String], iterable: JinjaExpression, filter: JinjaExpression?, body: [JinjaNode],
    otherwise: [JinjaNode])
  /// `{% set name = value %}` or, with `attribute`, `{% set name.attribute = value %}`.
  case set(name: String, attribute: String?, value: JinjaExpression)
}

/// Recursive-descent parser from `JinjaLexer` tokens to `JinjaNode`s. Operator precedence,
/// loosest first: conditional `a if b else c`, `or`, `and`, `not`, comparisons and `in`, `~`,
/// `+ -`, `* / // %`, `**`, unary `-`, then filters `|f` and tests `is t` on a postfix
/// expression (attribute, index, slice, call).
struct JinjaParser {
  private let tokens: [JinjaToken]
  private let template: String
  private var position = 0

  static let supportedTags: Set<String> = ["if", "elif", "else", "endif", "for", "endfor", "set"]

  init(tokens: [JinjaToken], template: String) {
    self.tokens = tokens
    self.template = template
  }

  static func parse(_ template: String) throws(TokenizerError) -> [JinjaNode] {
    let tokens = try JinjaLexer.tokenize(template)
    var parser = JinjaParser(tokens: tokens, template: template)
    let (nodes, endTag) = try parser.parseNodes(until: [])
    if let endTag {
      throw parser.error("unexpected '{% \(endTag.name) %}' without an opening tag", at: endTag.offset)
    }
    return nodes
  }

  func error(_ message: String, at offset: Int) -> TokenizerError {
    let (line, column) = JinjaLexer.lineAndColumn(of: offset, in: template)
    return .templateSyntax(message: message, line: line, column: column)
  }

  private var current: JinjaToken? {
    position < tokens.count ? tokens[position] : nil
  }

  private var currentOffset: Int {
    current?.offset ?? tokens.last.map { $0.offset } ?? 0
  }

  private func describe(_ token: JinjaToken?) -> String {
    guard let token else { return "end of template" }
    switch token.kind {
    case .text: return "text"
    case .variableBegin: return "'{{'"
    case .variableEnd: return "'}}'"
    case .blockBegin: return "'{%'"
    case .blockEnd: return "'%}'"
    case .name(let name): return "'\(name)'"
    case .string(let value): return "string \(value.debugDescription)"
    case .integer(let value): return "number \(value)"
    case .float(let value): return "number \(value)"
    case .symbol(let symbol): return "'\(symbol)'"
    }
  }

  private mutating func expect(_ kind: JinjaToken.Kind, _ what: String) throws(TokenizerError) {
    guard let token = current, token.kind == kind else {
      throw error("expected \(what), found \(describe(current))", at: currentOffset)
    }
    position += 1
  }

  private mutating func acceptSymbol(_ symbol: String) -> Bool {
    if current?.kind == .symbol(symbol) {
      position += 1
      return true
    }
    return false
  }

  private mutating func acceptName(_ name: String) -> Bool {
    if current?.kind == .name(name) {
      position += 1
      return true
    }
    return false
  }

  private func isName(_ name: String, at offset: Int = 0) -> Bool {
    position + offset < tokens.count && tokens[position + offset].kind == .name(name)
  }

  private mutating func expectName() throws(TokenizerError) -> String {
    guard case .name(let name)? = current?.kind else {
      throw error("expected a name, found \(describe(current))", at: currentOffset)
    }
    position += 1
    return name
  }

  // MARK: - Statements

  /// Parses nodes until a block tag whose name is in `endTags`; consumes that tag's name only.
  private mutating func parseNodes(until endTags: Set<String>) throws(TokenizerError)
    -> ([JinjaNode], (name: String, offset: Int)?)
  {
    var nodes: [JinjaNode] = []
    while let token = current {
      switch token.kind {
      case .text(let text):
        position += 1
        nodes.append(.text(text))
      case .variableBegin:
        position += 1
        let expression = try parseExpression()
        try expect(.variableEnd, "'}}'")
        nodes.append(.output(expression))
      case .blockBegin:
        let tagOffset = token.offset
        position += 1
        let nameOffset = currentOffset
        let name = try expectName()
        if endTags.contains(name) {
          return (nodes, (name, tagOffset))
        }
        switch name {
        case "if": nodes.append(try parseIf())
        case "for": nodes.append(try parseFor(openedAt: tagOffset))
        case "set": nodes.append(try parseSet())
        case "elif", "else", "endif", "endfor":
          throw error("unexpected '{% \(name) %}' here", at: tagOffset)
        default:
          throw error(
            "unsupported tag '{% \(name) %}'; supported tags are if, elif, else, for, set",
            at: nameOffset)
        }
      default:
        throw error("unexpected \(describe(token)) outside a tag", at: token.offset)
      }
    }
    if !endTags.isEmpty {
      let names = endTags.sorted().joined(separator: "' or '")
      throw error("template ended before '{% \(names) %}'", at: currentOffset)
    }
    return (nodes, nil)
  }

  private mutating func parseIf() throws(TokenizerError) -> JinjaNode {
    var branches: [(JinjaExpression, [JinjaNode])] = []
    var condition = try parseExpression()
    try expect(.blockEnd, "'%}' after the if condition")
    while true {
      let (body, end) = try parseNodes(until: ["elif", "else", "endif"])
      branches.append((condition, body))
      switch end?.name {
      case "elif":
        condition = try parseExpression()
        try expect(.blockEnd, "'%}' after the elif condition")
      case "else":
        try expect(.blockEnd, "'%}' after else")
        let (otherwise, _) = try parseNodes(until: ["endif"])
        try expect(.blockEnd, "'%}' after endif")
        return .ifChain(branches: branches, otherwise: otherwise)
      default:
        try expect(.blockEnd, "'%}' after endif")
        return .ifChain(branches: branches, otherwise: [])
      }
    }
  }

  private mutating func parseFor(openedAt offset: Int) throws(TokenizerError) -> JinjaNode {
    var targets = [try expectName()]
    while acceptSymbol(",") {
      targets.append(try expectName())
    }
    guard acceptName("in") else {
      throw error("expected 'in' in the for tag, found \(describe(current))", at: currentOffset)
    }
    let iterable = try parseOr()
    var filter: JinjaExpression?
    if acceptName("if") {
      filter = try parseOr()
    }
    if isName("recursive") {
      throw error("unsupported 'recursive' loops", at: currentOffset)
    }
    try expect(.blockEnd, "'%}' after the for tag")
    let (body, end) = try parseNodes(until: ["else", "endfor"])
    var otherwise: [JinjaNode] = []
    if end?.name == "else" {
      try expect(.blockEnd, "'%}' after else")
      (otherwise, _) = try parseNodes(until: ["endfor"])
    }
    try expect(.blockEnd, "'%}' after endfor")
    return .forLoop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise)
  }

  private mutating func parseSet() throws(TokenizerError) -> JinjaNode {
    let name = try expectName()
    var attribute: String?
    if acceptSymbol(".") {
      attribute = try expectName()
    }
    guard acceptSymbol("=") else {
      throw error(
        "expected '=' in the set tag, found \(describe(current)); block form '{% set x %}' is unsupported",
        at: currentOffset)
    }
    let value = try parseExpression()
    try expect(.blockEnd, "'%}' after the set tag")
    return .set(name: name, attribute: attribute, value: value)
  }

  // MARK: - Expressions

  mutating func parseExpression() throws(TokenizerError) -> JinjaExpression {
    let value = try parseOr()
    if acceptName("if") {
      let condition = try parseOr()
      var otherwise: JinjaExpression?
      if acceptName("else") {
        otherwise = try parseExpression()
      }
      return .conditional(value: value, condition: condition, otherwise: otherwise)
    }
    return value
  }

  private mutating func parseOr() throws(TokenizerError) -> JinjaExpression {
    var left = try parseAnd()
    while acceptName("or") {
      left = .binary("or", left, try parseAnd())
    }
    return left
  }

  private mutating func parseAnd() throws(TokenizerError) -> JinjaExpression {
    var left = try parseNot()
    while acceptName("and") {
      left = .binary("and", left, try parseNot())
    }
    return left
  }

  private mutating func parseNot() throws(TokenizerError) -> JinjaExpression {
    if acceptName("not") {
      return .not(try parseNot())
    }
    return try parseComparison()
  }

  private mutating func parseComparison() throws(TokenizerError) -> JinjaExpression {
    var left = try parseConcatenation()
    while true {
      if case .symbol(let symbol)? = current?.kind, ["==", "!=", "<", ">", "<=", ">="].contains(symbol) {
        position += 1
        left = .binary(symbol, left, try parseConcatenation())
      } else if acceptName("in") {
        left = .binary("in", left, try parseConcatenation())
      } else if isName("not") && isName("in", at: 1) {
        position += 2
        left = .binary("not in", left, try parseConcatenation())
      } else {
        return left
      }
    }
  }

  private mutating func parseConcatenation() throws(TokenizerError) -> JinjaExpression {
    var left = try parseAdditive()
    while acceptSymbol("~") {
      left = .binary("~", left, try parseAdditive())
    }
    return left
  }

  private mutating func parseAdditive() throws(TokenizerError) -> JinjaExpression {
    var left = try parseMultiplicative()
    while case .symbol(let symbol)? = current?.kind, symbol == "+" || symbol == "-" {
      position += 1
      left = .binary(symbol, left, try parseMultiplicative())
    }
    return left
  }

  private mutating func parseMultiplicative() throws(TokenizerError) -> JinjaExpression {
    var left = try parsePower()
    while case .symbol(let symbol)? = current?.kind, ["*", "/", "//", "%"].contains(symbol) {
      position += 1
      left = .binary(symbol, left, try parsePower())
    }
    return left
  }

  private mutating func parsePower() throws(TokenizerError) -> JinjaExpression {
    var left = try parseUnary()
    while acceptSymbol("**") {
      left = .binary("**", left, try parseUnary())
    }
    return left
  }

  private mutating func parseUnary() throws(TokenizerError) -> JinjaExpression {
    if acceptSymbol("-") {
      return .negate(try parseUnary())
    }
    if acceptSymbol("+") {
      return try parseUnary()
    }
    var expression = try parsePostfix(try parsePrimary())
    while true {
      if acceptSymbol("|") {
        let name = try expectName()
        let arguments = current?.kind == .symbol("(") ? try parseArguments().arguments : []
        expression = .filter(expression, name: name, arguments: arguments)
      } else if acceptName("is") {
        let negated = acceptName("not")
        let name = try expectName()
        var arguments: [JinjaExpression] = []
        if current?.kind == .symbol("(") {
          arguments = try parseArguments().arguments
        }
        expression = .test(expression, name: name, negated: negated, arguments: arguments)
      } else {
        return expression
      }
    }
  }

  private mutating func parsePrimary() throws(TokenizerError) -> JinjaExpression {
    guard let token = current else {
      throw error("expected an expression, found end of template", at: currentOffset)
    }
    position += 1
    switch token.kind {
    case .string(var value):
      while case .string(let next)? = current?.kind {
        value += next
        position += 1
      }
      return .literal(.string(value))
    case .integer(let value): return .literal(.integer(value))
    case .float(let value): return .literal(.float(value))
    case .name(let name):
      switch name {
      case "true", "True": return .literal(.bool(true))
      case "false", "False": return .literal(.bool(false))
      case "none", "None": return .literal(.none)
      default: return .variable(name)
      }
    case .symbol("("):
      let inner = try parseExpression()
      if current?.kind == .symbol(",") {
        throw error("unsupported tuple literal", at: currentOffset)
      }
      try expect(.symbol(")"), "')'")
      return inner
    case .symbol("["):
      var items: [JinjaExpression] = []
      while !acceptSymbol("]") {
        items.append(try parseExpression())
        if !acceptSymbol(",") {
          try expect(.symbol("]"), "']' or ','")
          break
        }
      }
      return .list(items)
    case .symbol("{"):
      var pairs: [(JinjaExpression, JinjaExpression)] = []
      while !acceptSymbol("}") {
        let key = try parseExpression()
        try expect(.symbol(":"), "':' in a dictionary literal")
        pairs.append((key, try parseExpression()))
        if !acceptSymbol(",") {
          try expect(.symbol("}"), "'}' or ','")
          break
        }
      }
      return .dictionary(pairs)
    default:
      throw error("expected an expression, found \(describe(token))", at: token.offset)
    }
  }

  private mutating func parsePostfix(_ base: JinjaExpression) throws(TokenizerError) -> JinjaExpression {
    var expression = base
    while true {
      if acceptSymbol(".") {
        expression = .attribute(expression, try expectName())
      } else if current?.kind == .symbol("[") {
        position += 1
        expression = try parseSubscript(of: expression)
      } else if current?.kind == .symbol("(") {
        let (arguments, keywords) = try parseArguments()
        expression = .call(expression, arguments: arguments, keywords: keywords)
      } else {
        return expression
      }
    }
  }

  /// Parses `[index]` or `[start:stop:step]` after the opening bracket.
  private mutating func parseSubscript(of base: JinjaExpression) throws(TokenizerError) -> JinjaExpression {
    var parts: [JinjaExpression?] = []
    var current: JinjaExpression?
    var sawColon = false
    while true {
      if acceptSymbol("]") {
        parts.append(current)
        break
      }
      if acceptSymbol(":") {
        sawColon = true
        parts.append(current)
        current = nil
        continue
      }
      if current != nil {
        throw error("expected ']' or ':' in a subscript, found \(describe(self.current))", at: currentOffset)
      }
      current = try parseExpression()
    }
    if !sawColon {
      guard let index = parts[0] else {
        throw error("empty subscript '[]'", at: currentOffset)
      }
      return .index(base, index)
    }
    guard parts.count <= 3 else {
      throw error("a slice takes at most start:stop:step", at: currentOffset)
    }
    return .slice(
      base, start: parts[0], stop: parts.count > 1 ? parts[1] : nil,
      step: parts.count > 2 ? parts[2] : nil)
  }

  private mutating func parseArguments() throws(TokenizerError)
    -> (arguments: [JinjaExpression], keywords: [(String, JinjaExpression)])
  {
    try expect(.symbol("("), "'('")
    var arguments: [JinjaExpression] = []
    var keywords: [(String, JinjaExpression)] = []
    while !acceptSymbol(")") {
      if case .name(let name)? = current?.kind, position + 1 < tokens.count,
        tokens[position + 1].kind == .symbol("=")
      {
        position += 2
        keywords.append((name, try parseExpression()))
      } else {
        arguments.append(try parseExpression())
      }
      if !acceptSymbol(",") {
        try expect(.symbol(")"), "')' or ','")
        break
      }
    }
    return (arguments, keywords)
  }
}
