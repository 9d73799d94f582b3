import Foundation
import Testing
@testable import XLEval

private func sample(_ lls: [Double], gold: Int?, lengths: [Int], greedy: [Bool]? = nil) -> SampleRecord {
  SampleRecord(
    task: "t", doc: 0, gold: gold, loglikelihoods: lls, isGreedy: greedy ?? lls.map { _ in false },
    continuationTokens: lls.map { _ in 1 }, normalizationLengths: lengths)
}

@Suite("Metrics")
struct MetricsTests {
  let tolerance = 1e-12

  @Test("acc and acc_norm with stderr")
  func accuracy() throws {
    // acc hits [1, 0, 0]; acc_norm hits [1, 0, 1]; both stderr √(1/3) / √3 = 1/3.
    let samples = [
      sample([-1, -2], gold: 0, lengths: [10, 1]),
      sample([-3, -1], gold: 0, lengths: [1, 10]),
      sample([-4, -2], gold: 0, lengths: [10, 1]),
    ]
    let metrics = choiceMetrics(task: .hellaswag, samples: samples)
    let acc = try #require(metrics.first { $0.name == "acc" })
    let accNorm = try #require(metrics.first { $0.name == "acc_norm" })
    #expect(abs(acc.value - 1.0 / 3) < tolerance)
    #expect(abs(acc.standardError! - 1.0 / 3) < tolerance)
    #expect(abs(accNorm.value - 2.0 / 3) < tolerance)
    #expect(abs(accNorm.standardError! - 1.0 / 3) < tolerance)
  }

  @Test("boolq reports acc only")
  func boolqMetrics() {
    let metrics = choiceMetrics(task: .boolq, samples: [sample([-1, -2], gold: 1, lengths: [2, 3])])
    #expect(metrics.map(\.name) == ["acc"])
    #expect(metrics.first?.value == 0)
    #expect(metrics.first?.standardError == nil)
  }

  @Test("argmax takes the first tie")
  func argmaxTies() {
    #expect(Statistics.argmax([-1, -1, -2]) == 0)
    #expect(Statistics.argmax([-3, -1, -1]) == 1)
    #expect(Statistics.argmax([.nan, -5]) == 1)
  }

  @Test("lambada acc and perplexity")
  func lambada() throws {
    let samples = [
      sample([-1], gold: nil, lengths: [3], greedy: [true]),
      sample([-3], gold: nil, lengths: [3], greedy: [false]),
    ]
    let metrics = choiceMetrics(task: .lambadaOpenAI, samples: samples)
    let acc = try #require(metrics.first { $0.name == "acc" })
    let perplexity = try #require(metrics.first { $0.name == "perplexity" })
    #expect(abs(acc.value - 0.5) < tolerance)
    #expect(abs(acc.standardError! - 0.5) < tolerance)
    // exp(−mean(−1, −3)) = e²; delta method: e² × (√2 / √2).
    #expect(abs(perplexity.value - exp(2)) < 1e-9)
    #expect(abs(perplexity.standardError! - exp(2)) < 1e-9)
    #expect(!perplexity.higherIsBetter)
  }

  @Test("corpus perplexities and ratio stderr")
  func corpusPerplexity() throws {
    let documents = [
      PerplexityDocument(loglikelihood: -10, tokens: 5, words: 2, bytes: 20),
      PerplexityDocument(loglikelihood: -20, tokens: 5, words: 4, bytes: 40),
    ]
    let metrics = perplexityMetrics(documents)
    let token = try #require(metrics.first { $0.name == "token_perplexity" })
    let word = try #require(metrics.first { $0.name == "word_perplexity" })
    let byte = try #require(metrics.first { $0.name == "byte_perplexity" })
    let bits = try #require(metrics.first { $0.name == "bits_per_byte" })
    #expect(abs(token.value - exp(3)) < 1e-9)
    // R = −3, residuals ±5, √(50 / 1) / (5 · √2) = 1, so stderr = e³ · 1.
    #expect(abs(token.standardError! - exp(3)) < 1e-9)
    #expect(abs(word.value - exp(5)) < 1e-9)
    #expect(abs(byte.value - exp(0.5)) < 1e-12)
    #expect(abs(bits.value - 0.5 / log(2)) < 1e-12)
    // Words and bytes are proportional to the scores here, so their ratio has no spread.
    #expect(abs(word.standardError!) < 1e-9)

    let single = perplexityMetrics([documents[0]])
    #expect(single.allSatisfy { $0.standardError == nil })
  }

  @Test("word count splits on whitespace")
  func words() {
    #expect(wordCount("  one two\n\nthree\tfour ") == 4)
    #expect(wordCount("") == 0)
  }
}

@Suite("Rolling perplexity")
struct RollingPerplexityTests {
  @Test("windows score each token once")
  func windowsCoverTokens() {
    let sequence = Array(0..<10)
    let windows = rollingWindows(sequence, windowLength: 4, stride: 3)
    #expect(windows.map(\.tokens) == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])
    #expect(windows.map(\.scoredCount) == [3, 3, 3])

    for windowLength in 2...6 {
      for stride in 1..<windowLength {
        let cut = rollingWindows(sequence, windowLength: windowLength, stride: stride)
        #expect(cut.reduce(0) { $0 + $1.scoredCount } == 9)
        #expect(cut.allSatisfy { $0.tokens.count <= windowLength })
        #expect(cut.allSatisfy { $0.scoredCount <= $0.tokens.count - 1 })
        // A window is shorter than windowLength only when it starts at the sequence's first token.
        #expect(cut.allSatisfy { $0.tokens.count == windowLength || $0.tokens.first == 0 })
      }
    }
    #expect(rollingWindows([7], windowLength: 4, stride: 3).isEmpty)
  }

  @Test("rolling sum equals full-context sum")
  func rollingMatchesDirect() throws {
    let model = CharacterModel(maxContext: 5, documentPrefixToken: 3)
    let tokens = model.encode("The quick brown fox jumps.")
    let sequence = [3] + tokens
    let direct = (1..<sequence.count).reduce(0.0) { $0 + CharacterModel.logprob(sequence[$1], after: sequence[$1 - 1]) }
    for stride in 1...4 {
      let (total, scored) = try rollingLoglikelihood(model: model, tokens: tokens, windowLength: 5, stride: stride)
      #expect(scored == tokens.count)
      #expect(abs(total - direct) < 1e-9)
    }
    let unprefixed = CharacterModel(maxContext: 5, documentPrefixToken: nil)
    let (_, scored) = try rollingLoglikelihood(model: unprefixed, tokens: tokens, windowLength: 5, stride: 4)
    #expect(scored == tokens.count - 1)
  }

  @Test("perplexity tasks through the evaluator")
  func perplexityTasks() throws {
    let folder = try TemporaryDataDirectory()
    defer { folder.remove() }
    let wiki = " = Title = \n Some text here .\n"
    try folder.write("eval/wikitext2_test.raw.txt", wiki)
    try folder.write("eval/imdb_test_1000.jsonl", """
      {"text": "Great film."}
      {"text": "Bad film, é."}
      {"text": "Third."}

      """)
    let model = CharacterModel(maxContext: 8, documentPrefixToken: 3)
    let configuration = EvaluationConfiguration(dataDirectory: folder.url, tasks: [.wikitext2, .imdb], limit: 2)
    var reports: [EvaluationProgress] = []
    let run = try Evaluator(model: model, modelName: "fake", configuration: configuration).run { reports.append($0) }
    #expect(model.windows.allSatisfy { $0.count <= 8 })

    let wikiResult = try #require(run.results.task("wikitext2"))
    let sequence = [3] + model.encode(wiki)
    let direct = (1..<sequence.count).reduce(0.0) { $0 + CharacterModel.logprob(sequence[$1], after: sequence[$1 - 1]) }
    let wordPerplexity = try #require(wikiResult.metric("word_perplexity"))
    #expect(abs(wordPerplexity.value - exp(-direct / 7)) < 1e-9)
    let bytePerplexity = try #require(wikiResult.metric("byte_perplexity"))
    #expect(abs(bytePerplexity.value - exp(-direct / Double(wiki.utf8.count))) < 1e-9)

    let imdbResult = try #require(run.results.task("imdb"))
    #expect(imdbResult.documents == 2)
    #expect(imdbResult.metric("token_perplexity")?.standardError != nil)
    let last = try #require(reports.last)
    #expect(last.task == .imdb)
    #expect(last.done == last.total)
    #expect(last.unit == "tokens")
    #expect(last.description.hasPrefix("imdb: \(last.total)/\(last.total) tokens"))
    #expect(run.results.windowLength == 8)
    #expect(run.results.stride == 7)
  }

  @Test("invalid window options are rejected")
  func invalidWindow() {
    let model = CharacterModel(maxContext: 8)
    let folder = URL(fileURLWithPath: "/nonexistent")
    let tooLong = Evaluator(
      model: model, modelName: "fake",
      configuration: EvaluationConfiguration(dataDirectory: folder, tasks: [.wikitext2], windowLength: 9))
    #expect(throws: EvaluationError.self) { try tooLong.perplexityWindow() }
    let badStride = Evaluator(
      model: model, modelName: "fake",
      configuration: EvaluationConfiguration(dataDirectory: folder, tasks: [.wikitext2], stride: 8))
    #expect(throws: EvaluationError.self) { try badStride.perplexityWindow() }
  }
}
