import Foundation

/// A command-line option of one verb.
struct OptionSpec {
  let name: String
  let valueName: String?  // nil for a flag without a value
  let help: String
  var defaultDescription: String? = nil
}

/// Errors in the command line itself. Each message names the option and what to do next.
enum CommandLineError: Error, CustomStringConvertible {
  case unknownOption(verb: String, option: String)
  case missingValue(option: String)
  case missingRequired(verb: String, option: String)
  case invalidValue(option: String, value: String, expected: String)
  case unexpectedArgument(verb: String, argument: String)
  case unknownVerb(String)
  case conflicting(String)

  var description: String {
    switch self {
    case .unknownOption(let verb, let option):
      return "unknown option '\(option)' for 'xllama \(verb)'; see 'xllama \(verb) --help'"
    case .missingValue(let option):
      return "option '\(option)' needs a value"
    case .missingRequired(let verb, let option):
      return "'xllama \(verb)' needs '\(option)'; see 'xllama \(verb) --help'"
    case .invalidValue(let option, let value, let expected):
      return "invalid value '\(value)' for '\(option)': expected \(expected)"
    case .unexpectedArgument(let verb, let argument):
      return "unexpected argument '\(argument)' for 'xllama \(verb)'; options start with '--'"
    case .unknownVerb(let verb):
      return "unknown command '\(verb)'; run 'xllama --help' for the list"
    case .conflicting(let message):
      return message
    }
  }
}

/// The parsed options of one verb, with typed accessors that reject malformed values.
struct ParsedOptions {
  let verb: String
  private(set) var values: [String: String] = [:]
  private(set) var flags: Set<String> = []
  let helpRequested: Bool

  init(verb: String, arguments: [String], specs: [OptionSpec]) throws {
    self.verb = verb
    let byName = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0) })
    var help = false
    var index = 0
    while index < arguments.count {
      let argument = arguments[index]
      index += 1
      if argument == "--help" || argument == "-h" {
        help = true
        continue
      }
      guard argument.hasPrefix("--") else {
        throw CommandLineError.unexpectedArgument(verb: verb, argument: argument)
      }
      var name = argument
      var inlineValue: String? = nil
      if let equals = argument.firstIndex(of: "=") {
        name = String(argument[..<equals])
        inlineValue = String(argument[argument.index(after: equals)...])
      }
      guard let spec = byName[name] else { throw CommandLineError.unknownOption(verb: verb, option: name) }
      if spec.valueName == nil {
        flags.insert(name)
        continue
      }
      if let inlineValue {
        values[name] = inlineValue
      } else {
        guard index < arguments.count else { throw CommandLineError.missingValue(option: name) }
        values[name] = arguments[index]
        index += 1
      }
    }
    helpRequested = help
  }

  func string(_ name: String) -> String? { values[name] }

  func required(_ name: String) throws -> String {
    guard let value = values[name] else { throw CommandLineError.missingRequired(verb: verb, option: name) }
    return value
  }

  func flag(_ name: String) -> Bool { flags.contains(name) }

  func integer(_ name: String, default fallback: Int, range: ClosedRange<Int> = Int.min...Int.max) throws -> Int {
    guard let text = values[name] else { return fallback }
    guard let value = Int(text), range.contains(value) else {
      throw CommandLineError.invalidValue(option: name, value: text, expected: "an integer in \(range.lowerBound)...\(range.upperBound)")
    }
    return value
  }

  func float(_ name: String, default fallback: Float) throws -> Float {
    guard let text = values[name] else { return fallback }
    guard let value = Float(text), value.isFinite else {
      throw CommandLineError.invalidValue(option: name, value: text, expected: "a number")
    }
    return value
  }
}

/// Help text of one verb.
func helpText(verb: String, summary: String, usage: String, specs: [OptionSpec]) -> String {
  var lines = ["usage: xllama \(verb) \(usage)", "", summary, "", "options:"]
  let labels = specs.map { spec in spec.valueName.map { "\(spec.name) \($0)" } ?? spec.name }
  let width = (labels.map(\.count).max() ?? 0) + 2
  for (spec, label) in zip(specs, labels) {
    var line = "  " + label.padding(toLength: width, withPad: " ", startingAt: 0) + spec.help
    if let fallback = spec.defaultDescription { line += " (default: \(fallback))" }
    lines.append(line)
  }
  lines.append("  " + "--help".padding(toLength: width, withPad: " ", startingAt: 0) + "show this help")
  return lines.joined(separator: "\n")
}
