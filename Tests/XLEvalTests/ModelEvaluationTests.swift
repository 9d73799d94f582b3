import Foundation
import Testing
import XLFormats
import XLModels
import XLTensors
@testable import XLEval

/// The adapter on the tiny random teacher and student of the reference fixtures (vocabulary of
/// 320), with UTF-8 bytes as tokens. Every batched score is checked against a plain reference:
/// one fresh session fed context + continuation, and `Kernels.logSoftmax` on each row.
@Suite("LanguageModelEvaluation on the tiny models")
struct ModelEvaluationTests {
  /// Absolute tolerance on summed log-probabilities (natural log) of a few tokens.
  static let tolerance = 1e-3

  static func tinyModels() throws -> (teacher: LlamaModel, student: XLlamaModel)? {
    let folder = SharedFolders.fixtures.appendingPathComponent("tiny")
    guard FileManager.default.fileExists(atPath: folder.appendingPathComponent("teacher.safetensors").path) else {
      print("tiny model fixtures not found in \(folder.path); skipping")
      return nil
    }
    func configuration(_ name: String) throws -> ModelConfiguration {
      try ModelConfiguration(configJSON: Data(contentsOf: folder.appendingPathComponent(name)), source: name)
    }
    let teacher = try LlamaModel(
      configuration: configuration("teacher_config.json"),
      weights: SafetensorsFile(url: folder.appendingPathComponent("teacher.safetensors")), source: "teacher.safetensors")
    let student = try XLlamaModel(
      configuration: configuration("student_config.json"),
      weights: SafetensorsFile(url: folder.appendingPathComponent("student.safetensors")), source: "student.safetensors")
    return (teacher, student)
  }

  static func bytes(_ text: String) -> [Int] { text.utf8.map(Int.init) }

  static func adapter(_ model: any LanguageModel, maxContext: Int? = nil, chunk: Int = 256) throws -> LanguageModelEvaluation {
    let adapter = try LanguageModelEvaluation(model: model, encode: bytes, maxContext: maxContext, documentPrefixToken: 0)
    adapter.logitChunk = chunk
    return adapter
  }

  /// Log-probabilities of `tokens[1...]` from one pass over all of them, and their argmax flags.
  static func referenceScores(_ model: any LanguageModel, _ tokens: [Int]) throws -> [(Double, Bool)] {
    let logits = try model.makeSession().append(Array(tokens.dropLast()), logits: .all)
    let v = logits.shape[1]
    var row = [Float](repeating: 0, count: v)
    var scores: [(Double, Bool)] = []
    for position in 0..<(tokens.count - 1) {
      logits.data.withUnsafeBufferPointer { all in
        row.withUnsafeMutableBufferPointer { output in
          Kernels.logSoftmax(all.baseAddress! + position * v, count: v, into: output.baseAddress!)
        }
      }
      let target = tokens[position + 1]
      let argmax = row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) }!
      scores.append((Double(row[target]), argmax == target))
    }
    return scores
  }

  static func reference(_ model: any LanguageModel, _ request: LoglikelihoodRequest) throws -> LoglikelihoodResult {
    let scores = try referenceScores(model, request.contextTokens + request.continuationTokens)
      .suffix(request.continuationTokens.count)
    return LoglikelihoodResult(loglikelihood: scores.map(\.0).reduce(0, +), isGreedy: scores.allSatisfy(\.1))
  }

  /// Two questions of three choices each (one single-token choice), and a lone request, with the
  /// groups interleaved so the results must come back in request order.
  static let requests: [LoglikelihoodRequest] = {
    let first = bytes("The cat sat on the")
    let second = bytes("Question: what is two plus two?\nAnswer:")
    return [
      LoglikelihoodRequest(contextTokens: first, continuationTokens: bytes(" mat")),
      LoglikelihoodRequest(contextTokens: second, continuationTokens: bytes(" four")),
      LoglikelihoodRequest(contextTokens: first, continuationTokens: bytes(" roof of the house")),
      LoglikelihoodRequest(contextTokens: second, continuationTokens: bytes("4")),
      LoglikelihoodRequest(contextTokens: first, continuationTokens: bytes("!")),
      LoglikelihoodRequest(contextTokens: second, continuationTokens: bytes(" five, said the model")),
      LoglikelihoodRequest(contextTokens: bytes("x"), continuationTokens: bytes("yz")),
    ]
  }()

  func checkBatchedScores(_ model: any LanguageModel, chunk: Int) throws {
    let scores = try Self.adapter(model, chunk: chunk).loglikelihoods(Self.requests)
    #expect(scores.count == Self.requests.count)
    for (request, score) in zip(Self.requests, scores) {
      let expected = try Self.reference(model, request)
      #expect(abs(score.loglikelihood - expected.loglikelihood) < Self.tolerance, "\(score) vs \(expected)")
      #expect(score.isGreedy == expected.isGreedy)
      #expect(score.loglikelihood < 0)
    }
  }

  @Test("teacher batched equals from scratch")
  func teacherBatched() throws {
    guard let models = try Self.tinyModels() else { return }
    try checkBatchedScores(models.teacher, chunk: 256)
    try checkBatchedScores(models.teacher, chunk: 3)
  }

  @Test("student batched equals from scratch")
  func studentBatched() throws {
    guard let models = try Self.tinyModels() else { return }
    try checkBatchedScores(models.student, chunk: 256)
    try checkBatchedScores(models.student, chunk: 3)
  }

  @Test("token logprobs equal one pass")
  func tokenLogprobs() throws {
    guard let models = try Self.tinyModels() else { return }
    let tokens = Self.bytes(String(repeating: "rolling windows score every token once. ", count: 5))
    for model in [models.teacher, models.student] as [any LanguageModel] {
      let expected = try Self.referenceScores(model, tokens).map(\.0)
      for chunk in [256, 17] {
        let logprobs = try Self.adapter(model, chunk: chunk).tokenLogprobs(tokens)
        #expect(logprobs.count == tokens.count - 1)
        let worst = zip(logprobs, expected).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst < 1e-4, "largest per-token difference \(worst) with chunks of \(chunk)")
      }
    }
  }

  @Test("greedy continuation is flagged")
  func greedyFlag() throws {
    guard let models = try Self.tinyModels() else { return }
    for model in [models.teacher, models.student] as [any LanguageModel] {
      // Extends the context with its own argmax tokens, so the continuation is greedy.
      let context = Self.bytes("Once upon a time")
      let session = model.makeSession()
      var logits = try session.append(context, logits: .last)
      var continuation: [Int] = []
      for _ in 0..<4 {
        let next = logits.data.indices.max { logits.data[$0] < logits.data[$1] || (logits.data[$0] == logits.data[$1] && $0 > $1) }!
        continuation.append(next)
        logits = try session.append([next], logits: .last)
      }
      var altered = continuation
      altered[3] = (altered[3] + 1) % model.configuration.vocabularySize
      let scores = try Self.adapter(model).loglikelihoods([
        LoglikelihoodRequest(contextTokens: context, continuationTokens: continuation),
        LoglikelihoodRequest(contextTokens: context, continuationTokens: altered),
      ])
      #expect(scores[0].isGreedy)
      #expect(!scores[1].isGreedy)
      #expect(scores[0].loglikelihood > scores[1].loglikelihood)
    }
  }

  @Test("maximum context defaults and bounds")
  func maximumContext() throws {
    guard let models = try Self.tinyModels() else { return }
    #expect(try Self.adapter(models.teacher).maxContext == 256)
    #expect(try Self.adapter(models.student).maxContext == LanguageModelEvaluation.defaultStudentContext)
    #expect(try Self.adapter(models.student, maxContext: 64).maxContext == 64)
    #expect(throws: EvaluationError.self) { try Self.adapter(models.teacher, maxContext: 257) }
    #expect(throws: EvaluationError.self) { try Self.adapter(models.student, maxContext: 1) }
    #expect(throws: EvaluationError.self) {
      try LanguageModelEvaluation(model: models.teacher, encode: Self.bytes, documentPrefixToken: 320)
    }
  }

  @Test("oversized requests are rejected")
  func oversizedRequests() throws {
    guard let models = try Self.tinyModels() else { return }
    let adapter = try Self.adapter(models.student, maxContext: 8)
    let fits = LoglikelihoodRequest(contextTokens: Array(1...5), continuationTokens: Array(6...9))
    #expect(try adapter.loglikelihoods([fits]).count == 1)
    let tooLong = LoglikelihoodRequest(contextTokens: Array(1...5), continuationTokens: Array(6...10))
    #expect(throws: EvaluationError.self) { try adapter.loglikelihoods([tooLong]) }
    #expect(throws: EvaluationError.self) { try adapter.tokenLogprobs(Array(1...9)) }
    #expect(throws: EvaluationError.self) { try adapter.tokenLogprobs([1]) }
  }
}
