import Foundation

/// Failures of the evaluator: unreadable or malformed input files, texts that tokenize to
/// nothing, requests that cannot fit the model, and models that break their contract.
public enum EvaluationError: Error, CustomStringConvertible, LocalizedError, Equatable {
  case unknownTask(String, known: [String])
  case fileNotFound(path: String)
  case unreadableFile(path: String, reason: String)
  /// A task or fixture file line that is not a valid document; `line` counts from 1.
  case malformedLine(path: String, line: Int, reason: String)
  /// A context or continuation whose text encodes to no token at all.
  case emptyTokenization(task: String, document: Int, what: String)
  case continuationTooLong(task: String, document: Int, tokens: Int, maxContext: Int)
  case invalidOption(name: String, value: String, expected: String)
  case modelContractViolation(String)
  case malformedFixture(path: String, reason: String)
  case writeFailed(path: String, reason: String)

  public var description: String {
    switch self {
    case .unknownTask(let name, let known):
      return "unknown task '\(name)'; known tasks: \(known.joined(separator: ", "))"
    case .fileNotFound(let path):
      return "file not found: \(path)"
    case .unreadableFile(let path, let reason):
      return "cannot read \(path): \(reason)"
    case .malformedLine(let path, let line, let reason):
      return "\(path):\(line): \(reason)"
    case .emptyTokenization(let task, let document, let what):
      return "\(task) document \(document): the \(what) encodes to no tokens"
    case .continuationTooLong(let task, let document, let tokens, let maxContext):
      return "\(task) document \(document): the continuation has \(tokens) tokens, "
        + "but the model's maximum context is \(maxContext) and needs at least one context token"
    case .invalidOption(let name, let value, let expected):
      return "invalid \(name) \(value); expected \(expected)"
    case .modelContractViolation(let message):
      return "the model broke the evaluation contract: \(message)"
    case .malformedFixture(let path, let reason):
      return "malformed evaluation fixture \(path): \(reason)"
    case .writeFailed(let path, let reason):
      return "cannot write \(path): \(reason)"
    }
  }

  public var errorDescription: String? { description }
}
