import Foundation

/// One metric of one task, with its standard error when one is defined.
public struct MetricValue: Codable, Sendable, Equatable {
  /// lm-evaluation-harness name: `acc`, `acc_norm`, `perplexity`, `token_perplexity`, …
  public var name: String
  public var value: Double
  public var standardError: Double?
  /// False for perplexities and bits per byte; recovery is inverted for those.
  public var higherIsBetter: Bool

  public init(name: String, value: Double, standardError: Double?, higherIsBetter: Bool) {
    self.name = name
    self.value = value
    self.standardError = standardError
    self.higherIsBetter = higherIsBetter
  }

  enum CodingKeys: String, CodingKey {
    case name, value
    case standardError = "stderr"
    case higherIsBetter = "higher_is_better"
  }
}

/// Sample statistics with the conventions of lm-evaluation-harness.
public enum Statistics {
  public static func mean(_ values: [Double]) -> Double {
    values.reduce(0, +) / Double(values.count)
  }

  /// Standard deviation with Bessel's correction (divisor n − 1); nil below two values.
  public static func sampleStandardDeviation(_ values: [Double]) -> Double? {
    guard values.count >= 2 else { return nil }
    let average = mean(values)
    let squares = values.reduce(0) { $0 + ($1 - average) * ($1 - average) }
    return (squares / Double(values.count - 1)).squareRoot()
  }

  /// Standard error of the mean: sample standard deviation / √n; nil below two values.
  public static func standardErrorOfMean(_ values: [Double]) -> Double? {
    sampleStandardDeviation(values).map { $0 / Double(values.count).squareRoot() }
  }

  /// Index of the largest value, the first one on ties (like `numpy.argmax`); NaN never wins.
  public static func argmax(_ values: [Double]) -> Int {
    var best = 0
    for index in values.indices where values[index] > values[best] || values[best].isNaN {
      best = index
    }
    return best
  }

  /// Standard error of the ratio Σy / Σx over documents by the delta method:
  /// √(Σ(yᵢ − R·xᵢ)² / (n − 1)) / (x̄ · √n) with R = Σy / Σx; nil below two documents.
  public static func ratioStandardError(numerators: [Double], denominators: [Double]) -> Double? {
    let count = numerators.count
    guard count >= 2, denominators.count == count else { return nil }
    let ratio = numerators.reduce(0, +) / denominators.reduce(0, +)
    var squares = 0.0
    for index in 0..<count {
      let residual = numerators[index] - ratio * denominators[index]
      squares += residual * residual
    }
    let meanDenominator = mean(denominators)
    return (squares / Double(count - 1)).squareRoot() / (meanDenominator * Double(count).squareRoot())
  }
}

/// The scores of one choice document, written as one line of the samples file.
public struct SampleRecord: Codable, Sendable, Equatable {
  public var task: String
  /// Zero-based line index in the task file.
  public var doc: Int
  public var gold: Int?
  /// Summed continuation log-probability of each choice (natural log).
  public var loglikelihoods: [Double]
  public var isGreedy: [Bool]
  public var continuationTokens: [Int]
  /// `acc_norm` divisor of each choice (characters of the choice text).
  public var normalizationLengths: [Int]

  public init(
    task: String, doc: Int, gold: Int?, loglikelihoods: [Double], isGreedy: [Bool],
    continuationTokens: [Int], normalizationLengths: [Int]
  ) {
    self.task = task
    self.doc = doc
    self.gold = gold
    self.loglikelihoods = loglikelihoods
    self.isGreedy = isGreedy
    self.continuationTokens = continuationTokens
    self.normalizationLengths = normalizationLengths
  }

  enum CodingKeys: String, CodingKey {
    case task, doc, gold, loglikelihoods
    case isGreedy = "is_greedy"
    case continuationTokens = "continuation_tokens"
    case normalizationLengths = "normalization_lengths"
  }
}

/// Metrics of a choice task from its samples.
///
/// - `acc`: mean of [argmax loglikelihood == gold]; for LAMBADA, mean of `is_greedy`.
/// - `acc_norm`: mean of [argmax (loglikelihood / normalization length) == gold]; hellaswag,
///   piqa, arc_easy, arc_challenge and openbook_qa only.
/// - `perplexity` (LAMBADA): exp(−mean loglikelihood). lm-evaluation-harness estimates its
///   standard error by bootstrap; this uses the delta method, perplexity × stderr(loglikelihood).
///
/// Standard errors of means are sample standard deviation / √n. Returns no metric when there are
/// no samples.
public func choiceMetrics(task: EvaluationTask, samples: [SampleRecord]) -> [MetricValue] {
  guard !samples.isEmpty else { return [] }
  if task == .lambadaOpenAI {
    let hits = samples.map { $0.isGreedy.first == true ? 1.0 : 0.0 }
    let loglikelihoods = samples.map { $0.loglikelihoods.first ?? -.infinity }
    let perplexity = exp(-Statistics.mean(loglikelihoods))
    let perplexityError = Statistics.standardErrorOfMean(loglikelihoods).map { perplexity * $0 }
    return [
      MetricValue(name: "acc", value: Statistics.mean(hits),
                  standardError: Statistics.standardErrorOfMean(hits), higherIsBetter: true),
      MetricValue(name: "perplexity", value: perplexity, standardError: perplexityError,
                  higherIsBetter: false),
    ]
  }

  let hits = samples.map { sample -> Double in
    Statistics.argmax(sample.loglikelihoods) == sample.gold ? 1 : 0
  }
  var metrics = [
    MetricValue(name: "acc", value: Statistics.mean(hits),
                standardError: Statistics.standardErrorOfMean(hits), higherIsBetter: true)
  ]
  if task.hasNormalizedAccuracy {
    let normalizedHits = samples.map { sample -> Double in
      let normalized = zip(sample.loglikelihoods, sample.normalizationLengths).map { $0 / Double($1) }
      return Statistics.argmax(normalized) == sample.gold ? 1 : 0
    }
    metrics.append(
      MetricValue(name: "acc_norm", value: Statistics.mean(normalizedHits),
                  standardError: Statistics.standardErrorOfMean(normalizedHits), higherIsBetter: true))
  }
  return metrics
}

extension EvaluationTask {
  /// Whether lm-evaluation-harness reports `acc_norm` for the task.
  public var hasNormalizedAccuracy: Bool {
    switch self {
    case .hellaswag, .piqa, .arcEasy, .arcChallenge, .openbookQA: return true
    default: return false
    }
  }
}

/// Summed log-probabilities and sizes of one perplexity document.
public struct PerplexityDocument: Sendable, Equatable {
  public var loglikelihood: Double
  /// Tokens scored.
  public var tokens: Int
  /// Whitespace-separated words of the text.
  public var words: Int
  /// UTF-8 bytes of the text.
  public var bytes: Int
}

/// Corpus-level perplexities, aggregated over all tokens of all documents:
/// `token_perplexity` = exp(−Σll / Σtokens), `word_perplexity` = exp(−Σll / Σwords),
/// `byte_perplexity` = exp(−Σll / Σbytes), `bits_per_byte` = −Σll / (Σbytes · ln 2).
///
/// Standard errors use the delta method for a ratio of sums over documents
/// (`Statistics.ratioStandardError`), so they are nil for a single document such as WikiText-2.
public func perplexityMetrics(_ documents: [PerplexityDocument]) -> [MetricValue] {
  guard !documents.isEmpty else { return [] }
  let loglikelihoods = documents.map(\.loglikelihood)
  let total = loglikelihoods.reduce(0, +)

  func perplexity(_ name: String, _ sizes: [Int]) -> MetricValue {
    let denominators = sizes.map(Double.init)
    let rate = total / denominators.reduce(0, +)
    let value = exp(-rate)
    let error = Statistics.ratioStandardError(numerators: loglikelihoods, denominators: denominators)
    return MetricValue(name: name, value: value, standardError: error.map { value * $0 }, higherIsBetter: false)
  }

  let bytes = documents.map(\.bytes)
  let bytesRate = total / Double(bytes.reduce(0, +))
  let bytesError = Statistics.ratioStandardError(numerators: loglikelihoods, denominators: bytes.map(Double.init))
  return [
    perplexity("token_perplexity", documents.map(\.tokens)),
    perplexity("word_perplexity", documents.map(\.words)),
    perplexity("byte_perplexity", bytes),
    MetricValue(name: "bits_per_byte", value: -bytesRate / log(2),
                standardError: bytesError.map { $0 / log(2) }, higherIsBetter: false),
  ]
}
