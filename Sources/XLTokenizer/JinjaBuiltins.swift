import Foundation

/// Filters, tests, functions, methods and operators of the Jinja subset. Names not listed
/// here throw `TokenizerError.templateRuntime` naming the filter, test, function or method.
enum JinjaBuiltins {
  // MARK: - Filters

  static func applyFilter(_ name: String, to value: JinjaValue, arguments: [JinjaValue])
    throws(TokenizerError) -> JinjaValue
  {
    switch name {
    case "trim":
      return .string(value.renderedText.trimmingCharacters(in: .whitespacesAndNewlines))
    case "length", "count":
      switch value {
      case .string(let text): return .integer(text.count)
      case .list(let items): return .integer(items.count)
      case .dictionary(let keys, _): return .integer(keys.count)
      case .undefined: return .integer(0)
      default: throw .templateRuntime(message: "filter 'length' cannot measure a \(value.typeName)")
      }
    case "lower": return .string(value.renderedText.lowercased())
    case "upper": return .string(value.renderedText.uppercased())
    case "capitalize":
      let text = value.renderedText
      return .string(text.prefix(1).uppercased() + text.dropFirst().lowercased())
    case "title": return .string(value.renderedText.capitalized)
    case "string": return .string(value.renderedText)
    case "safe": return value
    case "default", "d":
      let useDefaultForFalse = arguments.count > 1 && arguments[1].isTruthy
      let missing = useDefaultForFalse ? !value.isTruthy : isUndefined(value)
      return missing ? (arguments.first ?? .string("")) : value
    case "first", "last":
      let items = try sequence(value, for: "filter '\(name)'")
      return (name == "first" ? items.first : items.last) ?? .undefined
    case "reverse":
      if case .string(let text) = value { return .string(String(text.reversed())) }
      return .list(try sequence(value, for: "filter 'reverse'").reversed())
    case "list":
      return .list(try sequence(value, for: "filter 'list'"))
    case "join":
      let separator = arguments.first?.renderedText ?? ""
      return .string(try sequence(value, for: "filter 'join'").map(\.renderedText).joined(separator: separator))
    case "replace":
      guard arguments.count >= 2 else {
        throw .templateRuntime(message: "filter 'replace' expects two arguments (old, new)")
      }
      return .string(
        value.renderedText.replacingOccurrences(of: arguments[0].renderedText, with: arguments[1].renderedText))
    case "tojson":
      return .string(value.jsonText)
    case "items":
      return try callMethod("items", on: value, arguments: [])
    case "int":
      switch value {
      case .integer: return value
      case .float(let number): return .integer(Int(number))
      case .bool(let flag): return .integer(flag ? 1 : 0)
      case .string(let text): return .integer(Int(text.trimmingCharacters(in: .whitespaces)) ?? 0)
      default: return .integer(0)
      }
    default:
      throw .templateRuntime(message: "unsupported filter '\(name)'")
    }
  }

  private static func isUndefined(_ value: JinjaValue) -> Bool {
    if case .undefined = value { return true }
    return false
  }

  private static func sequence(_ value: JinjaValue, for context: String) throws(TokenizerError) -> [JinjaValue] {
    switch value {
    case .list(let items): return items
    case .string(let text): return text.map { .string(String($0)) }
    case .dictionary(let keys, _): return keys.map { .string($0) }
    case .undefined: return []
    default: throw .templateRuntime(message: "\(context) expects a sequence, found a \(value.typeName)")
    }
  }

  // MARK: - Tests

  static func applyTest(_ name: String, to value: JinjaValue, arguments: [JinjaValue])
    throws(TokenizerError) -> Bool
  {
    switch name {
    case "defined": return !isUndefined(value)
    case "undefined": return isUndefined(value)
    case "none":
      if case .none = value { return true }
      return false
    case "string":
      if case .string = value { return true }
      return false
    case "number":
      switch value {
      case .integer, .float: return true
      default: return false
      }
    case "integer":
      if case .integer = value { return true }
      return false
    case "float":
      if case .float = value { return true }
      return false
    case "boolean":
      if case .bool = value { return true }
      return false
    case "true":
      if case .bool(true) = value { return true }
      return false
    case "false":
      if case .bool(false) = value { return true }
      return false
    case "mapping":
      if case .dictionary = value { return true }
      return false
    case "sequence", "iterable":
      switch value {
      case .list, .string, .dictionary: return true
      default: return false
      }
    case "odd", "even":
      guard case .integer(let number) = value else {
        throw .templateRuntime(message: "test '\(name)' expects an integer, found a \(value.typeName)")
      }
      return (number % 2 != 0) == (name == "odd")
    case "eq", "equalto", "sameas":
      guard let other = arguments.first else {
        throw .templateRuntime(message: "test '\(name)' expects one argument")
      }
      return value.isEqual(to: other)
    default:
      throw .templateRuntime(message: "unsupported test 'is \(name)'")
    }
  }

  // MARK: - Functions and methods

  static func callFunction(_ name: String, arguments: [JinjaValue], keywords: [(String, JinjaValue)])
    throws(TokenizerError) -> JinjaValue
  {
    switch name {
    case "raise_exception":
      throw .templateException(message: arguments.first?.renderedText ?? "")
    case "namespace":
      var attributes: [String: JinjaValue] = [:]
      for (key, value) in keywords { attributes[key] = value }
      return .namespace(JinjaNamespace(attributes))
    case "dict":
      return .makeDictionary(keywords)
    case "range":
      let bounds = try arguments.map { value throws(TokenizerError) -> Int in
        guard case .integer(let number) = value else {
          throw .templateRuntime(message: "range() expects integers, found a \(value.typeName)")
        }
        return number
      }
      let (start, stop, step): (Int, Int, Int)
      switch bounds.count {
      case 1: (start, stop, step) = (0, bounds[0], 1)
      case 2: (start, stop, step) = (bounds[0], bounds[1], 1)
      case 3: (start, stop, step) = (bounds[0], bounds[1], bounds[2])
      default: throw .templateRuntime(message: "range() expects 1 to 3 arguments, found \(bounds.count)")
      }
      guard step != 0 else { throw .templateRuntime(message: "range() step cannot be zero") }
      return .list(Array(stride(from: start, to: stop, by: step)).map { .integer($0) })
    default:
      throw .templateRuntime(message: "unsupported function '\(name)()'")
    }
  }

  static func callMethod(_ name: String, on base: JinjaValue, arguments: [JinjaValue])
    throws(TokenizerError) -> JinjaValue
  {
    switch (base, name) {
    case (.string(let text), "strip"):
      return .string(strip(text, arguments.first, leading: true, trailing: true))
    case (.string(let text), "lstrip"):
      return .string(strip(text, arguments.first, leading: true, trailing: false))
    case (.string(let text), "rstrip"):
      return .string(strip(text, arguments.first, leading: false, trailing: true))
    case (.string(let text), "upper"): return .string(text.uppercased())
    case (.string(let text), "lower"): return .string(text.lowercased())
    case (.string(let text), "title"): return .string(text.capitalized)
    case (.string(let text), "startswith"):
      return .bool(text.hasPrefix(arguments.first?.renderedText ?? ""))
    case (.string(let text), "endswith"):
      return .bool(text.hasSuffix(arguments.first?.renderedText ?? ""))
    case (.string(let text), "replace") where arguments.count >= 2:
      return .string(text.replacingOccurrences(of: arguments[0].renderedText, with: arguments[1].renderedText))
    case (.string(let text), "split"):
      if let separator = arguments.first, case .string(let value) = separator {
        return .list(text.components(separatedBy: value).map { .string($0) })
      }
      return .list(text.split(whereSeparator: { $0.isWhitespace }).map { .string(String($0)) })
    case (.dictionary(let keys, let values), "items"):
      return .list(keys.map { .list([.string($0), values[$0]!]) })
    case (.dictionary(let keys, _), "keys"):
      return .list(keys.map { .string($0) })
    case (.dictionary(let keys, let values), "values"):
      return .list(keys.map { values[$0]! })
    case (.dictionary(_, let values), "get"):
      guard let key = arguments.first?.renderedText else {
        throw .templateRuntime(message: "get() expects a key")
      }
      return values[key] ?? (arguments.count > 1 ? arguments[1] : .none)
    default:
      throw .templateRuntime(message: "unsupported method '\(name)()' on a \(base.typeName)")
    }
  }

  private static func strip(_ text: String, _ characters: JinjaValue?, leading: Bool, trailing: Bool) -> String {
    let set: CharacterSet
    if let characters, case .string(let value) = characters {
      set = CharacterSet(charactersIn: value)
    } else {
      set = .whitespacesAndNewlines
    }
    var scalars = Substring(text).unicodeScalars[...]
    if leading {
      while let first = scalars.first, set.contains(first) { scalars.removeFirst() }
    }
    if trailing {
      while let last = scalars.last, set.contains(last) { scalars.removeLast() }
    }
    return String(String.UnicodeScalarView(scalars))
  }

  // MARK: - Operators

  static func contains(_ container: JinjaValue, _ element: JinjaValue) throws(TokenizerError) -> Bool {
    switch container {
    case .string(let text):
      guard case .string(let part) = element else {
        throw .templateRuntime(message: "'in <string>' requires a string on the left, found a \(element.typeName)")
      }
      return part.isEmpty || text.contains(part)
    case .list(let items):
      return items.contains { $0.isEqual(to: element) }
    case .dictionary(_, let values):
      guard case .string(let key) = element else { return false }
      return values[key] != nil
    case .undefined:
      return false
    default:
      throw .templateRuntime(message: "operator 'in' cannot search a \(container.typeName)")
    }
  }

  static func compare(_ symbol: String, _ left: JinjaValue, _ right: JinjaValue) throws(TokenizerError) -> Bool {
    let ordering: Int
    switch (left, right) {
    case (.string(let a), .string(let b)):
      ordering = a < b ? -1 : (a == b ? 0 : 1)
    default:
      guard let a = number(left), let b = number(right) else {
        throw .templateRuntime(message: "cannot compare a \(left.typeName) with a \(right.typeName) using '\(symbol)'")
      }
      ordering = a < b ? -1 : (a == b ? 0 : 1)
    }
    switch symbol {
    case "<": return ordering < 0
    case ">": return ordering > 0
    case "<=": return ordering <= 0
    default: return ordering >= 0
    }
  }

  private static func number(_ value: JinjaValue) -> Double? {
    switch value {
    case .integer(let number): return Double(number)
    case .float(let number): return number
    case .bool(let flag): return flag ? 1 : 0
    default: return nil
    }
  }

  static func arithmetic(_ symbol: String, _ left: JinjaValue, _ right: JinjaValue) throws(TokenizerError)
    -> JinjaValue
  {
    switch (symbol, left, right) {
    case ("+", .string(let a), .string(let b)): return .string(a + b)
    case ("+", .list(let a), .list(let b)): return .list(a + b)
    case ("*", .string(let text), .integer(let count)), ("*", .integer(let count), .string(let text)):
      return .string(String(repeating: text, count: max(count, 0)))
    case (_, .integer(let a), .integer(let b)):
      switch symbol {
      case "+": return .integer(a + b)
      case "-": return .integer(a - b)
      case "*": return .integer(a * b)
      case "/":
        guard b != 0 else { throw .templateRuntime(message: "division by zero") }
        return .float(Double(a) / Double(b))
      case "//", "%":
        guard b != 0 else { throw .templateRuntime(message: "division by zero") }
        // Python rounds integer division toward negative infinity.
        let quotient = Int((Double(a) / Double(b)).rounded(.down))
        return .integer(symbol == "//" ? quotient : a - quotient * b)
      case "**":
        return b >= 0 ? .integer(Int(pow(Double(a), Double(b)))) : .float(pow(Double(a), Double(b)))
      default: break
      }
    default:
      if let a = number(left), let b = number(right), !isBool(left) || !isBool(right) {
        switch symbol {
        case "+": return .float(a + b)
        case "-": return .float(a - b)
        case "*": return .float(a * b)
        case "/":
          guard b != 0 else { throw .templateRuntime(message: "division by zero") }
          return .float(a / b)
        case "//": return .float((a / b).rounded(.down))
        case "%": return .float(a - (a / b).rounded(.down) * b)
        case "**": return .float(pow(a, b))
        default: break
        }
      }
    }
    throw .templateRuntime(
      message: "operator '\(symbol)' is not defined for a \(left.typeName) and a \(right.typeName)")
  }

  private static func isBool(_ value: JinjaValue) -> Bool {
    if case .bool = value { return true }
    return false
  }
}
