import Foundation

/// Errors raised while preparing data, running optimizers and recording a training run.
///
/// Each message states what was found, what was expected and where (file, line, key, stage).
public enum TrainingError: Error, CustomStringConvertible, LocalizedError, Equatable {
  /// A loss came out NaN or infinite.
  case nonFiniteLoss(stage: String, step: Int, value: Float)
  /// A token shard file has a bad header or a size that disagrees with its header.
  case invalidShard(path: String, reason: String)
  /// A jsonl line is not a JSON object with a string field of the expected name.
  case malformedJSONLine(path: String, line: Int, reason: String)
  /// The tokenizer returned an id outside `0..<vocabSize`.
  case tokenOutOfRange(id: Int, vocabSize: Int, path: String)
  /// Optimizer state is missing a tensor, has a wrong shape or an unknown key.
  case invalidOptimizerState(key: String, reason: String)
  /// A file could not be opened, read, written or renamed.
  case fileOperationFailed(path: String, operation: String, reason: String)
  /// A configuration value is outside its allowed range.
  case invalidConfiguration(name: String, value: String, expected: String)
  /// The shards hold no window of `contextLength + 1` tokens.
  case notEnoughTokens(available: Int, required: Int)

  public var description: String {
    switch self {
    case .nonFiniteLoss(let stage, let step, let value):
      return "loss is \(value) at stage \(stage), step \(step); expected a finite number "
        + "(lower the learning rate or check the data and gradients)"
    case .invalidShard(let path, let reason):
      return "invalid token shard \(path): \(reason)"
    case .malformedJSONLine(let path, let line, let reason):
      return "\(path):\(line): \(reason)"
    case .tokenOutOfRange(let id, let vocabSize, let path):
      return "token id \(id) from \(path) is outside the vocabulary of size \(vocabSize)"
    case .invalidOptimizerState(let key, let reason):
      return "optimizer state '\(key)': \(reason)"
    case .fileOperationFailed(let path, let operation, let reason):
      return "failed to \(operation) \(path): \(reason)"
    case .invalidConfiguration(let name, let value, let expected):
      return "invalid \(name) \(value); expected \(expected)"
    case .notEnoughTokens(let available, let required):
      return "the largest shard holds \(available) tokens, but one training row "
        + "needs \(required) (context length + 1); add data or shorten the context"
    }
  }

  public var errorDescription: String? { description }
}
