import XLTensors

/// Which positions' logits a forward pass computes.
///
/// Computing logits is a (tokens × D) · (D × V) product, the largest single matrix in a small
/// model, so callers ask only for what they read.
public enum LogitSelection: Sendable, Equatable {
  /// No logits: the call only extends the context.
  case none
  /// The logits after the last fed token, shape (1, V).
  case last
  /// The logits after every fed token, shape (S, V).
  case all
}

/// A causal language model, teacher or student, that can open inference sessions.
public protocol LanguageModel: AnyObject, Sendable {
  var configuration: ModelConfiguration { get }
  /// The most tokens one session can hold, or nil when the model has no such limit.
  var contextLimit: Int? { get }
  /// A fresh session with an empty context.
  func makeSession() -> any ModelSession
  /// The weight matrices one decoded token reads in full: every layer's and the output
  /// projection (the embedding gives one row). Empty for a model that does not list them.
  var decodeMatrices: [WeightMatrix] { get }
}

extension LanguageModel {
  public var decodeMatrices: [WeightMatrix] { [] }
}

/// The running state of one sequence: a KV cache for a teacher, recurrent mLSTM states for a
/// student.
public protocol ModelSession: AnyObject {
  /// Tokens fed so far.
  var tokenCount: Int { get }
  /// Feeds `tokens` after the current context and returns the requested logits.
  ///
  /// Throws `ModelError.contextOverflow` when the context limit would be passed and
  /// `ModelError.invalidToken` for an id outside the vocabulary; the session is unchanged
  /// after either error.
  func append(_ tokens: [Int], logits: LogitSelection) throws -> Tensor
  /// An independent copy of this session: feeding one does not change the other.
  func fork() -> any ModelSession
}

extension ModelSession {
  /// Checks ids against the vocabulary before any state changes.
  func validate(_ tokens: [Int], vocabularySize: Int) throws {
    for token in tokens where token < 0 || token >= vocabularySize {
      throw ModelError.invalidToken(id: token, vocabularySize: vocabularySize)
    }
  }
}
