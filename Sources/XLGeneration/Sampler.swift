import Foundation
import XLTensors

/// Settings that choose the next token from a row of logits.
///
/// The steps run in the order Hugging Face transformers applies its logits processors:
/// repetition penalty, temperature, top-k, top-p, min-p, then a draw. A temperature of zero
/// means greedy decoding and ignores the other filters.
public struct SamplingParameters: Sendable, Equatable {
  /// Divides the logits; 0 picks the most likely token.
  public var temperature: Float = 0
  /// Keeps the k most likely tokens; 0 keeps all.
  public var topK: Int = 0
  /// Keeps the smallest set of most likely tokens whose probabilities sum to at least p; 1 keeps all.
  public var topP: Float = 1
  /// Drops tokens whose probability is below `minP` times the most likely token's; 0 keeps all.
  public var minP: Float = 0
  /// Penalty for tokens already in the context: a positive logit is divided by it and a
  /// negative one multiplied (the CTRL rule); 1 disables it.
  public var repetitionPenalty: Float = 1
  /// Seed of the random draws: the same seed and inputs give the same tokens.
  public var seed: UInt64 = 0

  public init(
    temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0,
    repetitionPenalty: Float = 1, seed: UInt64 = 0
  ) {
    self.temperature = temperature
    self.topK = topK
    self.topP = topP
    self.minP = minP
    self.repetitionPenalty = repetitionPenalty
    self.seed = seed
  }

  /// Checks the ranges; the message names the option.
  public func validate() throws {
    if !(temperature >= 0) || !temperature.isFinite {
      throw GenerationError.invalidParameter(name: "temperature", value: "\(temperature)", expected: "a finite number ≥ 0")
    }
    if topK < 0 {
      throw GenerationError.invalidParameter(name: "top-k", value: "\(topK)", expected: "an integer ≥ 0")
    }
    if !(topP > 0 && topP <= 1) {
      throw GenerationError.invalidParameter(name: "top-p", value: "\(topP)", expected: "a number in (0, 1]")
    }
    if !(minP >= 0 && minP <= 1) {
      throw GenerationError.invalidParameter(name: "min-p", value: "\(minP)", expected: "a number in [0, 1]")
    }
    if !(repetitionPenalty > 0) || !repetitionPenalty.isFinite {
      throw GenerationError.invalidParameter(name: "repetition-penalty", value: "\(repetitionPenalty)", expected: "a finite number > 0")
    }
  }
}

/// Picks tokens from logits according to `SamplingParameters`.
public struct Sampler: Sendable {
  public let parameters: SamplingParameters
  private var generator: SplitMix64

  public init(parameters: SamplingParameters) {
    self.parameters = parameters
    generator = SplitMix64(seed: parameters.seed)
  }

  /// Applies the repetition penalty to `logits` for every token in `history`, once per token.
  public static func applyRepetitionPenalty(_ logits: inout [Float], history: some Sequence<Int>, penalty: Float) {
    guard penalty != 1 else { return }
    for token in Set(history) where token >= 0 && token < logits.count {
      let value = logits[token]
      logits[token] = value < 0 ? value * penalty : value / penalty
    }
  }

  /// Picks the next token for one row of logits, given the tokens seen so far.
  public mutating func sample(logits row: [Float], history: [Int]) -> Int {
    var logits = row
    Self.applyRepetitionPenalty(&logits, history: history, penalty: parameters.repetitionPenalty)
    if parameters.temperature == 0 { return Self.argmax(logits) }

    // Candidates sorted by logit, largest first; ties keep the lower id first.
    var candidates = Array(logits.indices)
    let k = parameters.topK > 0 ? min(parameters.topK, logits.count) : logits.count
    if k < logits.count {
      candidates = Array(candidates.sorted { (logits[$0], $1) > (logits[$1], $0) }.prefix(k))
    } else {
      candidates.sort { (logits[$0], $1) > (logits[$1], $0) }
    }

    let inverseTemperature = 1 / Double(parameters.temperature)
    let largest = Double(logits[candidates[0]])
    var probabilities = candidates.map { exp((Double(logits[$0]) - largest) * inverseTemperature) }
    let total = probabilities.reduce(0, +)
    for index in probabilities.indices { probabilities[index] /= total }

    var kept = probabilities.count
    if parameters.topP < 1 {
      var cumulative = 0.0
      for (index, probability) in probabilities.enumerated() {
        cumulative += probability
        if cumulative >= Double(parameters.topP) {
          kept = index + 1
          break
        }
      }
    }
    if parameters.minP > 0 {
      let threshold = Double(parameters.minP) * probabilities[0]
      kept = max(1, min(kept, probabilities.prefix(kept).prefix { $0 >= threshold }.count))
    }

    let keptTotal = probabilities.prefix(kept).reduce(0, +)
    var draw = generator.nextDouble() * keptTotal
    for index in 0..<kept {
      draw -= probabilities[index]
      if draw < 0 { return candidates[index] }
    }
    return candidates[kept - 1]
  }

  /// Returns the index of the largest value; the lowest index wins a tie.
  public static func argmax(_ values: [Float]) -> Int {
    var best = 0
    var bestValue = -Float.infinity
    for (index, value) in values.enumerated() where value > bestValue {
      best = index
      bestValue = value
    }
    return best
  }
}

/// Errors raised by generation.
public enum GenerationError: Error, CustomStringConvertible, LocalizedError {
  case invalidParameter(name: String, value: String, expected: String)
  case emptyPrompt

  public var description: String {
    switch self {
    case .invalidParameter(let name, let value, let expected):
      return "invalid \(name) \(value): expected \(expected)"
    case .emptyPrompt:
      return "the prompt encodes to no tokens; give a non-empty prompt"
    }
  }

  public var errorDescription: String? { description }
}
