import Foundation

/// Errors raised while loading or running a model.
public enum ModelError: Error, CustomStringConvertible, LocalizedError {
  case invalidConfiguration(source: String, key: String, reason: String)
  case missingTensor(source: String, name: String)
  case wrongShape(source: String, name: String, expected: [Int], found: [Int])
  case unsupportedModel(path: String, reason: String)
  case contextOverflow(requested: Int, limit: Int)
  case invalidToken(id: Int, vocabularySize: Int)
  case invalidState(path: String, reason: String)

  public var description: String {
    switch self {
    case .invalidConfiguration(let source, let key, let reason):
      return key.isEmpty ? "\(source): \(reason)" : "\(source): '\(key)' \(reason)"
    case .missingTensor(let source, let name):
      return "\(source): tensor '\(name)' is missing"
    case .wrongShape(let source, let name, let expected, let found):
      return "\(source): tensor '\(name)' has shape \(found), expected \(expected)"
    case .unsupportedModel(let path, let reason):
      return "\(path): \(reason)"
    case .contextOverflow(let requested, let limit):
      return "\(requested) tokens exceed the model's context of \(limit) tokens; shorten the prompt or lower --max-tokens"
    case .invalidToken(let id, let vocabularySize):
      return "token id \(id) is outside the vocabulary (0..<\(vocabularySize))"
    case .invalidState(let path, let reason):
      return "\(path): \(reason)"
    }
  }

  public var errorDescription: String? { description }
}
