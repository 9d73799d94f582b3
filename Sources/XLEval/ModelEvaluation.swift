import Foundation
import XLModels
import XLTensors
import XLTokenizer

/// An `EvaluationModel` over any `LanguageModel`, teacher or student.
///
/// `loglikelihoods` reads each distinct context of a call once and continues every choice from a
/// `fork()` of that session: a copy of the fixed-size mLSTM states for a student, of the KV cache
/// for a teacher. The scores equal those of feeding context + continuation from scratch, up to
/// floating-point rounding of the chunked forward pass.
public final class LanguageModelEvaluation: EvaluationModel {
  /// The context a student gets when the caller gives none, because a student has no limit of
  /// its own. It matches the common lm-evaluation-harness default `max_length` of 2048.
  public static let defaultStudentContext = 2048

  public let model: any LanguageModel
  public let maxContext: Int
  public let documentPrefixToken: Int?
  private let encoder: (String) -> [Int]
  /// Tokens fed to the model per forward pass when logits of every position are needed, which
  /// bounds the logits buffer at `logitChunk × V` floats (50 MB for SmolLM2's V = 49152). Tests
  /// lower it to exercise the chunk joins.
  var logitChunk = 256

  /// Wraps `model` with the tokenizer function `encode`, which must add no special token.
  ///
  /// `maxContext` defaults to the model's `contextLimit`, or `defaultStudentContext` for a model
  /// without one. Throws `EvaluationError.invalidOption` when it is below 2 or above the model's
  /// limit.
  public init(
    model: any LanguageModel, encode: @escaping (String) -> [Int], maxContext: Int? = nil,
    documentPrefixToken: Int?
  ) throws {
    let limit = model.contextLimit
    let context = maxContext ?? limit ?? Self.defaultStudentContext
    guard context >= 2, context <= (limit ?? Int.max) else {
      throw EvaluationError.invalidOption(
        name: "maximum context", value: "\(context)",
        expected: limit.map { "2...\($0) (the model's context limit)" } ?? "at least 2")
    }
    if let token = documentPrefixToken, !(0..<model.configuration.vocabularySize).contains(token) {
      throw EvaluationError.invalidOption(
        name: "document prefix token", value: "\(token)",
        expected: "an id in 0..<\(model.configuration.vocabularySize)")
    }
    self.model = model
    self.encoder = encode
    self.maxContext = context
    self.documentPrefixToken = documentPrefixToken
  }

  /// Wraps a loaded model with its own tokenizer and `defaultPrefixToken(for:)`.
  ///
  /// `maxContext` is capped at the model's context limit, so one value can serve a teacher and
  /// a student alike.
  public convenience init(_ loaded: LoadedModel, maxContext: Int? = nil) throws {
    let tokenizer = loaded.tokenizer
    let capped = maxContext.map { requested in loaded.model.contextLimit.map { min($0, requested) } ?? requested }
    try self.init(
      model: loaded.model, encode: { tokenizer.encode($0) }, maxContext: capped,
      documentPrefixToken: Self.defaultPrefixToken(for: loaded))
  }

  /// Picks the token put before each perplexity document: `<|endoftext|>` when the vocabulary
  /// has it, else the tokenizer's EOS, else the configuration's first EOS.
  ///
  /// `<|endoftext|>` separates pretraining documents in GPT-2-style vocabularies such as
  /// SmolLM2's, so it is the context a model has learned for the start of a document.
  /// NOTE: lm-evaluation-harness's `HFLM.prefix_token_id` prefers the tokenizer's BOS and falls
  /// back to its EOS. For SmolLM2-Instruct those are the chat markers `<|im_start|>` and
  /// `<|im_end|>`, so its perplexities differ slightly from these.
  public static func defaultPrefixToken(for loaded: LoadedModel) -> Int? {
    loaded.tokenizer.id(for: "<|endoftext|>") ?? loaded.tokenizer.eosTokenID
      ?? loaded.configuration.eosTokenIDs.first
  }

  public func encode(_ text: String) -> [Int] {
    encoder(text)
  }

  public func loglikelihoods(_ requests: [LoglikelihoodRequest]) throws -> [LoglikelihoodResult] {
    var results = [LoglikelihoodResult?](repeating: nil, count: requests.count)
    for group in LoglikelihoodRequest.groupedByContext(requests) {
      let context = group.contextTokens
      try checkLength(context.count, "context")
      let session = model.makeSession()
      // The row after the last context token predicts every continuation's first token.
      let lastContextRow = try session.append(context, logits: .last)
      for (position, index) in group.requestIndices.enumerated() {
        let continuation = requests[index].continuationTokens
        guard !continuation.isEmpty else {
          throw EvaluationError.modelContractViolation("request \(index) has no continuation tokens")
        }
        try checkLength(context.count + continuation.count - 1, "context + continuation − 1")
        // The group's last request may feed the context's own session, because no one reads
        // it afterwards.
        let isLast = position == group.requestIndices.count - 1
        let branch = isLast ? session : session.fork()
        var score = TokenScore.of(lastContextRow, row: 0, target: continuation[0])
        try forEachLogitRow(of: Array(continuation.dropLast()), in: branch) { logits, row, offset in
          score.add(TokenScore.of(logits, row: row, target: continuation[offset + 1]))
        }
        results[index] = LoglikelihoodResult(loglikelihood: score.logprob, isGreedy: score.isGreedy)
      }
    }
    return results.map { $0! }
  }

  public func tokenLogprobs(_ tokens: [Int]) throws -> [Double] {
    guard tokens.count >= 2 else {
      throw EvaluationError.modelContractViolation("tokenLogprobs needs at least 2 tokens, got \(tokens.count)")
    }
    try checkLength(tokens.count, "window")
    var logprobs: [Double] = []
    logprobs.reserveCapacity(tokens.count - 1)
    try forEachLogitRow(of: Array(tokens.dropLast()), in: model.makeSession()) { logits, row, offset in
      logprobs.append(TokenScore.of(logits, row: row, target: tokens[offset + 1]).logprob)
    }
    return logprobs
  }

  /// Feeds `tokens` into `session` in chunks of `logitChunk` tokens, calling `body` with the logits,
  /// the row in them and the position in `tokens` of the token after which that row predicts.
  private func forEachLogitRow(
    of tokens: [Int], in session: any ModelSession, _ body: (Tensor, Int, Int) -> Void
  ) throws {
    var start = 0
    while start < tokens.count {
      let end = min(start + logitChunk, tokens.count)
      let logits = try session.append(Array(tokens[start..<end]), logits: .all)
      for row in 0..<(end - start) { body(logits, row, start + row) }
      start = end
    }
  }

  private func checkLength(_ count: Int, _ what: String) throws {
    guard count >= 1, count <= maxContext else {
      throw EvaluationError.modelContractViolation(
        "the \(what) has \(count) tokens, expected 1...\(maxContext) (the maximum context)")
    }
  }
}

/// The log-probability of target tokens under rows of logits, and whether each was the argmax.
struct TokenScore {
  var logprob: Double
  var isGreedy: Bool

  /// Scores `target` under row `row` of `logits` (rows × V): logit − log Σ exp(logits), in
  /// Double. Greedy means `target` is the first index of the largest logit, as PyTorch's
  /// `argmax` picks it.
  static func of(_ logits: Tensor, row: Int, target: Int) -> TokenScore {
    let v = logits.shape[1]
    precondition(row < logits.shape[0] && (0..<v).contains(target), "row \(row) or target \(target) out of range")
    return logits.data.withUnsafeBufferPointer { buffer in
      let values = buffer.baseAddress! + row * v
      var largest = -Float.infinity
      var argmax = 0
      for index in 0..<v where values[index] > largest {
        largest = values[index]
        argmax = index
      }
      var total: Double = 0
      for index in 0..<v { total += Double(exp(values[index] - largest)) }
      let logprob = Double(values[target] - largest) - log(total)
      return TokenScore(logprob: logprob, isGreedy: argmax == target)
    }
  }

  mutating func add(_ other: TokenScore) {
    logprob += other.logprob
    isGreedy = isGreedy && other.isGreedy
  }
}
