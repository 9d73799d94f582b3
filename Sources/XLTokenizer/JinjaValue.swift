import Foundation

/// Runtime value of the Jinja interpreter.
enum JinjaValue {
  case undefined
  case none
  case bool(Bool)
  case integer(Int)
  case float(Double)
  case string(String)
  case list([JinjaValue])
  /// Dictionary with its keys in insertion order.
  case dictionary(keys: [String], values: [String: JinjaValue])
  /// Mutable attribute bag from `namespace(...)`, shared by reference as in Jinja.
  case namespace(JinjaNamespace)

  init(_ literal: JinjaLiteral) {
    switch literal {
    case .none: self = .none
    case .bool(let value): self = .bool(value)
    case .integer(let value): self = .integer(value)
    case .float(let value): self = .float(value)
    case .string(let value): self = .string(value)
    }
  }

  static func makeDictionary(_ pairs: [(String, JinjaValue)]) -> JinjaValue {
    var keys: [String] = []
    var values: [String: JinjaValue] = [:]
    for (key, value) in pairs {
      if values[key] == nil { keys.append(key) }
      values[key] = value
    }
    return .dictionary(keys: keys, values: values)
  }

  var isTruthy: Bool {
    switch self {
    case .undefined, .none: return false
    case .bool(let value): return value
    case .integer(let value): return value != 0
    case .float(let value): return value != 0
    case .string(let value): return !value.isEmpty
    case .list(let items): return !items.isEmpty
    case .dictionary(let keys, _): return !keys.isEmpty
    case .namespace: return true
    }
  }

  var typeName: String {
    switch self {
    case .undefined: return "undefined"
    case .none: return "none"
    case .bool: return "boolean"
    case .integer: return "integer"
    case .float: return "float"
    case .string: return "string"
    case .list: return "list"
    case .dictionary: return "dictionary"
    case .namespace: return "namespace"
    }
  }

  /// Text as `{{ value }}` prints it (Python's `str`): undefined prints nothing, containers
  /// print as Python literals.
  var renderedText: String {
    switch self {
    case .undefined: return ""
    case .string(let value): return value
    default: return pythonRepresentation
    }
  }

  /// Python's `repr` of the value, which is how Jinja prints values inside containers.
  var pythonRepresentation: String {
    switch self {
    case .undefined: return ""
    case .none: return "None"
    case .bool(let value): return value ? "True" : "False"
    case .integer(let value): return String(value)
    case .float(let value):
      return value == value.rounded() && abs(value) < 1e16 ? String(format: "%.1f", value) : String(value)
    case .string(let value):
      let escaped = value.replacingOccurrences(of: "\\", with: "\\\\")
        .replacingOccurrences(of: "'", with: "\\'").replacingOccurrences(of: "\n", with: "\\n")
      return "'\(escaped)'"
    case .list(let items):
      return "[" + items.map(\.pythonRepresentation).joined(separator: ", ") + "]"
    case .dictionary(let keys, let values):
      let body = keys.map { "'\($0)': \(values[$0]!.pythonRepresentation)" }
      return "{" + body.joined(separator: ", ") + "}"
    case .namespace: return "<Namespace>"
    }
  }

  /// JSON text as the `tojson` filter writes it (keys in insertion order, ", " and ": "
  /// separators as Python's `json.dumps`).
  var jsonText: String {
    switch self {
    case .undefined, .none: return "null"
    case .bool(let value): return value ? "true" : "false"
    case .integer(let value): return String(value)
    case .float(let value): return String(value)
    case .string(let value):
      var out = "\""
      for scalar in value.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
          if scalar.value < 0x20 || scalar.value > 0x7E {
            out += scalar.value > 0xFFFF ? utf16Escape(scalar) : String(format: "\\u%04x", scalar.value)
          } else {
            out.unicodeScalars.append(scalar)
          }
        }
      }
      return out + "\""
    case .list(let items):
      return "[" + items.map(\.jsonText).joined(separator: ", ") + "]"
    case .dictionary(let keys, let values):
      let body = keys.map { JinjaValue.string($0).jsonText + ": " + values[$0]!.jsonText }
      return "{" + body.joined(separator: ", ") + "}"
    case .namespace: return "null"
    }
  }

  private func utf16Escape(_ scalar: Unicode.Scalar) -> String {
    String(scalar).utf16.map { String(format: "\\u%04x", $0) }.joined()
  }

  /// Equality as Python compares these values (1 == 1.0; undefined equals only undefined).
  func isEqual(to other: JinjaValue) -> Bool {
    switch (self, other) {
    case (.undefined, .undefined), (.none, .none): return true
    case (.bool(let a), .bool(let b)): return a == b
    case (.integer(let a), .integer(let b)): return a == b
    case (.integer(let a), .float(let b)): return Double(a) == b
    case (.float(let a), .integer(let b)): return a == Double(b)
    case (.float(let a), .float(let b)): return a == b
    case (.string(let a), .string(let b)): return a == b
    case (.list(let a), .list(let b)):
      return a.count == b.count && zip(a, b).allSatisfy { $0.isEqual(to: $1) }
    case (.dictionary(let keysA, let a), .dictionary(let keysB, let b)):
      return Set(keysA) == Set(keysB) && keysA.allSatisfy { a[$0]!.isEqual(to: b[$0]!) }
    case (.namespace(let a), .namespace(let b)): return a === b
    default: return false
    }
  }
}

/// Storage of a `namespace(...)` value.
final class JinjaNamespace {
  var attributes: [String: JinjaValue]

  init(_ attributes: [String: JinjaValue]) {
    self.attributes = attributes
  }
}
