import Foundation
import XLModels
import XLTensors
import XLTokenizer

/// Limits and stop conditions of one generation.
public struct GenerationOptions: Sendable {
  public var sampling = SamplingParameters()
  /// New tokens at most.
  public var maxTokens = 128
  /// Token ids that end the generation (EOS, the chat template's end-of-turn token); they are
  /// not part of the returned text.
  public var stopTokenIDs: Set<Int> = []

  public init(sampling: SamplingParameters = SamplingParameters(), maxTokens: Int = 128, stopTokenIDs: Set<Int> = []) {
    self.sampling = sampling
    self.maxTokens = maxTokens
    self.stopTokenIDs = stopTokenIDs
  }
}

/// Why a generation ended.
public enum StopReason: String, Sendable, Codable {
  case stopToken = "stop token"
  case maxTokens = "max tokens"
  case cancelled
}

/// Counts and timings of one generation.
public struct GenerationSummary: Sendable {
  public var promptTokens: Int
  public var generatedTokens: [Int]
  public var text: String
  public var stopReason: StopReason
  /// The stop token that ended the generation; it was fed to the session but is not in `text`.
  public var stopTokenID: Int?
  /// Seconds spent reading the prompt (prefill).
  public var promptSeconds: Double
  /// Seconds spent producing the new tokens (decode).
  public var generationSeconds: Double

  public var promptTokensPerSecond: Double { Double(promptTokens) / max(promptSeconds, 1e-9) }
  public var generationTokensPerSecond: Double {
    Double(generatedTokens.count) / max(generationSeconds, 1e-9)
  }
}

/// Runs a model on a prompt and produces text, streaming it as it becomes printable.
///
/// The session passed in (or a new one) keeps the context, so a conversation can continue
/// after `generate` returns; a student's session can also be saved with `StateFile`.
public struct Generator: Sendable {
  public let model: any LanguageModel
  public let tokenizer: BPETokenizer

  public init(model: any LanguageModel, tokenizer: BPETokenizer) {
    self.model = model
    self.tokenizer = tokenizer
  }

  /// Feeds `promptTokens` to `session`, then samples up to `options.maxTokens` tokens.
  ///
  /// `onText` receives each piece of text as soon as it is complete UTF-8 (a character split
  /// across tokens arrives whole) and returns false to stop early. The stop token, when one
  /// ends the generation, is fed to the session too, so that a chat continues after it.
  public func generate(
    promptTokens: [Int], session: (any ModelSession)? = nil, options: GenerationOptions,
    onText: (String) -> Bool = { _ in true }
  ) throws -> GenerationSummary {
    try options.sampling.validate()
    guard !promptTokens.isEmpty else { throw GenerationError.emptyPrompt }
    let session = session ?? model.makeSession()
    if let limit = model.contextLimit, session.tokenCount + promptTokens.count + options.maxTokens > limit {
      throw ModelError.contextOverflow(requested: session.tokenCount + promptTokens.count + options.maxTokens, limit: limit)
    }
    var sampler = Sampler(parameters: options.sampling)
    var decoder = StreamingDecoder(tokenizer: tokenizer)
    var history = promptTokens
    var generated: [Int] = []
    var text = ""
    var reason = StopReason.maxTokens
    var stopTokenID: Int? = nil

    let promptStart = Date()
    var logits = try session.append(promptTokens, logits: .last)
    let promptSeconds = Date().timeIntervalSince(promptStart)

    let generationStart = Date()
    while generated.count < options.maxTokens {
      let token = sampler.sample(logits: logits.data, history: history)
      if options.stopTokenIDs.contains(token) {
        _ = try session.append([token], logits: .none)
        reason = .stopToken
        stopTokenID = token
        break
      }
      generated.append(token)
      history.append(token)
      let piece = decoder.append(token)
      text += piece
      if !piece.isEmpty && !onText(piece) {
        reason = .cancelled
        break
      }
      logits = try session.append([token], logits: .last)
    }
    let tail = decoder.flush()
    if !tail.isEmpty {
      text += tail
      _ = onText(tail)
    }
    return GenerationSummary(
      promptTokens: promptTokens.count, generatedTokens: generated, text: text, stopReason: reason, stopTokenID: stopTokenID,
      promptSeconds: promptSeconds, generationSeconds: Date().timeIntervalSince(generationStart))
  }

  /// Streams the generated text as an asynchronous sequence of pieces, for Swift concurrency callers.
  public func stream(promptTokens: [Int], options: GenerationOptions) -> AsyncThrowingStream<String, Error> {
    AsyncThrowingStream { continuation in
      let generator = self
      let task = Task.detached {
        do {
          _ = try generator.generate(promptTokens: promptTokens, options: options) { piece in
            continuation.yield(piece)
            return !Task.isCancelled
          }
          continuation.finish()
        } catch {
          continuation.finish(throwing: error)
        }
      }
      continuation.onTermination = { _ in task.cancel() }
    }
  }
}
