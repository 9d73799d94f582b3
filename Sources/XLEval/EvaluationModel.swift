/// One scoring request: the summed log-probability of `continuationTokens` given `contextTokens`.
///
/// Both arrays are non-empty, and `contextTokens.count + continuationTokens.count - 1` is at most
/// the model's `maxContext` (the last continuation token is scored but never fed to the model).
/// The evaluator truncates long contexts on the left to keep that bound, as lm-evaluation-harness
/// does.
public struct LoglikelihoodRequest: Sendable, Hashable {
  public var contextTokens: [Int]
  public var continuationTokens: [Int]

  public init(contextTokens: [Int], continuationTokens: [Int]) {
    self.contextTokens = contextTokens
    self.continuationTokens = continuationTokens
  }
}

/// The score of one `LoglikelihoodRequest`.
public struct LoglikelihoodResult: Sendable, Hashable {
  /// Σ log p(continuation[n] | context, continuation[..<n]), natural log.
  public var loglikelihood: Double
  /// Whether every continuation token is the argmax of its predicted distribution.
  public var isGreedy: Bool

  public init(loglikelihood: Double, isGreedy: Bool) {
    self.loglikelihood = loglikelihood
    self.isGreedy = isGreedy
  }
}

/// The evaluator's view of a language model: a tokenizer and next-token log-probabilities.
///
/// Teacher and student both conform. No beginning-of-sequence token is ever added by the
/// evaluator, and `encode` must not add one either.
public protocol EvaluationModel {
  /// Token ids of `text`, without any special token.
  func encode(_ text: String) -> [Int]

  /// Scores every request, returning one result per request in the same order.
  ///
  /// Requests of one call often share a context, such as all choices of one question. So a
  /// recurrent model can read each distinct context once and continue every choice from a copy of the
  /// saved state. `LoglikelihoodRequest.groupedByContext(_:)` finds those groups.
  func loglikelihoods(_ requests: [LoglikelihoodRequest]) throws -> [LoglikelihoodResult]

  /// Natural-log probabilities of `tokens[1...]`, each given the tokens before it.
  ///
  /// Returns `tokens.count - 1` values. `tokens.count` is between 2 and `maxContext`.
  func tokenLogprobs(_ tokens: [Int]) throws -> [Double]

  /// The largest number of tokens passed to `tokenLogprobs`, and the bound on requests above.
  var maxContext: Int { get }

  /// The token placed before the first token of a document in rolling perplexity, so the
  /// first token is scored too (lm-evaluation-harness uses the end-of-text token). When nil,
  /// each document's first token is not scored and is left out of the token count.
  var documentPrefixToken: Int? { get }
}

/// Requests of one batch that share the same context tokens.
public struct ContextGroup: Sendable, Equatable {
  public var contextTokens: [Int]
  /// Positions in the batch of the requests with this context, in batch order.
  public var requestIndices: [Int]
}

extension LoglikelihoodRequest {
  /// Groups `requests` by identical context, groups ordered by first appearance.
  public static func groupedByContext(_ requests: [LoglikelihoodRequest]) -> [ContextGroup] {
    var groups: [ContextGroup] = []
    var groupOfContext: [[Int]: Int] = [:]
    for (index, request) in requests.enumerated() {
      if let group = groupOfContext[request.contextTokens] {
        groups[group].requestIndices.append(index)
      } else {
        groupOfContext[request.contextTokens] = groups.count
        groups.append(ContextGroup(contextTokens: request.contextTokens, requestIndices: [index]))
      }
    }
    return groups
  }
}
