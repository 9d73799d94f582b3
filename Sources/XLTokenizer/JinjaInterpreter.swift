import Foundation

/// Tree-walking evaluator for parsed Jinja templates.
///
/// Scoping follows Jinja: each `for` iteration gets its own scope, so `{% set %}` inside a loop
/// does not change variables outside it (use `namespace()` for that), while `if` blocks share
/// their enclosing scope. Undefined names and missing attributes or keys evaluate to undefined,
/// which prints as nothing and is false.
struct JinjaInterpreter {
  private var scopes: [[String: JinjaValue]]
  private(set) var output = ""

  init(globals: [String: JinjaValue]) {
    scopes = [globals]
  }

  mutating func render(_ nodes: [JinjaNode]) throws(TokenizerError) {
    for node in nodes {
      try render(node)
    }
  }

  private mutating func render(_ node: JinjaNode) throws(TokenizerError) {
    switch node {
    case .text(let text):
      output += text
    case .output(let expression):
      output += try evaluate(expression).renderedText
    case .ifChain(let branches, let otherwise):
      for (condition, body) in branches where try evaluate(condition).isTruthy {
        try render(body)
        return
      }
      try render(otherwise)
    case .forLoop(let targets, let iterable, let filter, let body, let otherwise):
      try renderLoop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise)
    case .set(let name, let attribute, let valueExpression):
      let value = try evaluate(valueExpression)
      if let attribute {
        guard case .namespace(let namespace) = lookup(name) else {
          throw .templateRuntime(
            message: "cannot set '\(name).\(attribute)': '\(name)' is \(lookup(name).typeName), expected a namespace")
        }
        namespace.attributes[attribute] = value
      } else {
        scopes[scopes.count - 1][name] = value
      }
    }
  }

  private mutating func renderLoop(
    targets: [String], iterable: JinjaExpression, filter: JinjaExpression?, body: [JinjaNode],
    otherwise: [JinjaNode]
  ) throws(TokenizerError) {
    var items = try iterate(evaluate(iterable))
    if let filter {
      var kept: [JinjaValue] = []
      for item in items {
        scopes.append(try bind(targets, to: item))
        let keep = try evaluate(filter).isTruthy
        scopes.removeLast()
        if keep { kept.append(item) }
      }
      items = kept
    }
    if items.isEmpty {
      try render(otherwise)
      return
    }
    for (index, item) in items.enumerated() {
      var scope = try bind(targets, to: item)
      scope["loop"] = .makeDictionary([
        ("index", .integer(index + 1)), ("index0", .integer(index)),
        ("revindex", .integer(items.count - index)), ("revindex0", .integer(items.count - index - 1)),
        ("first", .bool(index == 0)), ("last", .bool(index == items.count - 1)),
        ("length", .integer(items.count)),
        ("previtem", index > 0 ? items[index - 1] : .undefined),
        ("nextitem", index + 1 < items.count ? items[index + 1] : .undefined),
      ])
      scopes.append(scope)
      defer { scopes.removeLast() }
      try render(body)
    }
  }

  private func bind(_ targets: [String], to item: JinjaValue) throws(TokenizerError) -> [String: JinjaValue] {
    if targets.count == 1 {
      return [targets[0]: item]
    }
    let parts = try iterate(item)
    guard parts.count == targets.count else {
      throw .templateRuntime(
        message: "cannot unpack \(parts.count) values into \(targets.count) loop variables (\(targets.joined(separator: ", ")))")
    }
    return Dictionary(uniqueKeysWithValues: zip(targets, parts))
  }

  private func iterate(_ value: JinjaValue) throws(TokenizerError) -> [JinjaValue] {
    switch value {
    case .undefined, .none: return []
    case .list(let items): return items
    case .dictionary(let keys, _): return keys.map { .string($0) }
    case .string(let text): return text.map { .string(String($0)) }
    default: throw .templateRuntime(message: "cannot iterate over a \(value.typeName)")
    }
  }

  private func lookup(_ name: String) -> JinjaValue {
    for scope in scopes.reversed() {
      if let value = scope[name] { return value }
    }
    return .undefined
  }

  // MARK: - Expressions

  func evaluate(_ expression: JinjaExpression) throws(TokenizerError) -> JinjaValue {
    switch expression {
    case .literal(let literal):
      return JinjaValue(literal)
    case .variable(let name):
      return lookup(name)
    case .list(let items):
      var values: [JinjaValue] = []
      for item in items { values.append(try evaluate(item)) }
      return .list(values)
    case .dictionary(let pairs):
      var entries: [(String, JinjaValue)] = []
      for (keyExpression, valueExpression) in pairs {
        guard case .string(let key) = try evaluate(keyExpression) else {
          throw .templateRuntime(message: "dictionary keys must be strings")
        }
        entries.append((key, try evaluate(valueExpression)))
      }
      return .makeDictionary(entries)
    case .attribute(let base, let name):
      return member(of: try evaluate(base), named: name)
    case .index(let base, let indexExpression):
      return try subscriptValue(try evaluate(base), try evaluate(indexExpression))
    case .slice(let base, let start, let stop, let step):
      return try slice(
        try evaluate(base), start: start.map { e throws(TokenizerError) in try evaluate(e) },
        stop: stop.map { e throws(TokenizerError) in try evaluate(e) },
        step: step.map { e throws(TokenizerError) in try evaluate(e) })
    case .call(let callee, let argumentExpressions, let keywordExpressions):
      var arguments: [JinjaValue] = []
      for argument in argumentExpressions { arguments.append(try evaluate(argument)) }
      var keywords: [(String, JinjaValue)] = []
      for (name, value) in keywordExpressions { keywords.append((name, try evaluate(value))) }
      return try call(callee, arguments: arguments, keywords: keywords)
    case .filter(let base, let name, let argumentExpressions):
      var arguments: [JinjaValue] = []
      for argument in argumentExpressions { arguments.append(try evaluate(argument)) }
      return try JinjaBuiltins.applyFilter(name, to: try evaluate(base), arguments: arguments)
    case .test(let base, let name, let negated, let argumentExpressions):
      var arguments: [JinjaValue] = []
      for argument in argumentExpressions { arguments.append(try evaluate(argument)) }
      let result = try JinjaBuiltins.applyTest(name, to: try evaluate(base), arguments: arguments)
      return .bool(result != negated)
    case .not(let operand):
      return .bool(!(try evaluate(operand).isTruthy))
    case .negate(let operand):
      switch try evaluate(operand) {
      case .integer(let value): return .integer(-value)
      case .float(let value): return .float(-value)
      case let other: throw .templateRuntime(message: "cannot negate a \(other.typeName)")
      }
    case .binary(let symbol, let left, let right):
      return try binary(symbol, left, right)
    case .conditional(let value, let condition, let otherwise):
      if try evaluate(condition).isTruthy {
        return try evaluate(value)
      }
      return try otherwise.map { e throws(TokenizerError) in try evaluate(e) } ?? .undefined
    }
  }

  private func member(of base: JinjaValue, named name: String) -> JinjaValue {
    switch base {
    case .dictionary(_, let values): return values[name] ?? .undefined
    case .namespace(let namespace): return namespace.attributes[name] ?? .undefined
    default: return .undefined
    }
  }

  private func subscriptValue(_ base: JinjaValue, _ index: JinjaValue) throws(TokenizerError) -> JinjaValue {
    switch (base, index) {
    case (.list(let items), .integer(let position)):
      let resolved = position < 0 ? items.count + position : position
      return items.indices.contains(resolved) ? items[resolved] : .undefined
    case (.string(let text), .integer(let position)):
      let characters = Array(text)
      let resolved = position < 0 ? characters.count + position : position
      return characters.indices.contains(resolved) ? .string(String(characters[resolved])) : .undefined
    case (_, .string(let key)):
      return member(of: base, named: key)
    case (.undefined, _):
      return .undefined
    default:
      throw .templateRuntime(message: "cannot index a \(base.typeName) with a \(index.typeName)")
    }
  }

  /// Slices a list or string with Python semantics for `base[start:stop:step]`.
  private func slice(
    _ base: JinjaValue, start: JinjaValue?, stop: JinjaValue?, step: JinjaValue?
  ) throws(TokenizerError) -> JinjaValue {
    func integer(_ value: JinjaValue?) throws(TokenizerError) -> Int? {
      switch value {
      case nil, .none?, .undefined?: return nil
      case .integer(let number)?: return number
      case let other?: throw .templateRuntime(message: "slice bounds must be integers, found \(other.typeName)")
      }
    }
    let stepValue = try integer(step) ?? 1
    guard stepValue != 0 else { throw .templateRuntime(message: "slice step cannot be zero") }

    func indices(count: Int) throws(TokenizerError) -> [Int] {
      func clamp(_ value: Int?, _ fallback: Int, low: Int, high: Int) -> Int {
        guard var value else { return fallback }
        if value < 0 { value += count }
        return min(max(value, low), high)
      }
      var result: [Int] = []
      if stepValue > 0 {
        let first = clamp(try integer(start), 0, low: 0, high: count)
        let last = clamp(try integer(stop), count, low: 0, high: count)
        var index = first
        while index < last {
          result.append(index)
          index += stepValue
        }
      } else {
        let first = clamp(try integer(start), count - 1, low: -1, high: count - 1)
        let last = clamp(try integer(stop), -1, low: -1, high: count - 1)
        var index = first
        while index > last {
          result.append(index)
          index += stepValue
        }
      }
      return result
    }

    switch base {
    case .list(let items):
      return .list(try indices(count: items.count).map { items[$0] })
    case .string(let text):
      let characters = Array(text)
      return .string(String(try indices(count: characters.count).map { characters[$0] }))
    default:
      throw .templateRuntime(message: "cannot slice a \(base.typeName)")
    }
  }

  private func call(
    _ callee: JinjaExpression, arguments: [JinjaValue], keywords: [(String, JinjaValue)]
  ) throws(TokenizerError) -> JinjaValue {
    if case .attribute(let baseExpression, let method) = callee {
      return try JinjaBuiltins.callMethod(method, on: try evaluate(baseExpression), arguments: arguments)
    }
    guard case .variable(let name) = callee else {
      throw .templateRuntime(message: "only named functions and methods can be called")
    }
    return try JinjaBuiltins.callFunction(name, arguments: arguments, keywords: keywords)
  }

  private func binary(_ symbol: String, _ leftExpression: JinjaExpression, _ rightExpression: JinjaExpression)
    throws(TokenizerError) -> JinjaValue
  {
    let left = try evaluate(leftExpression)
    switch symbol {
    case "and": return left.isTruthy ? try evaluate(rightExpression) : left
    case "or": return left.isTruthy ? left : try evaluate(rightExpression)
    default: break
    }
    let right = try evaluate(rightExpression)
    switch symbol {
    case "==": return .bool(left.isEqual(to: right))
    case "!=": return .bool(!left.isEqual(to: right))
    case "in": return .bool(try JinjaBuiltins.contains(right, left))
    case "not in": return .bool(!(try JinjaBuiltins.contains(right, left)))
    case "~": return .string(left.renderedText + right.renderedText)
    case "<", ">", "<=", ">=": return .bool(try JinjaBuiltins.compare(symbol, left, right))
    default: return try JinjaBuiltins.arithmetic(symbol, left, right)
    }
  }
}
