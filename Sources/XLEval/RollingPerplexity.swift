/// One model call of a rolling loglikelihood: the tokens to pass to `tokenLogprobs`, of which
/// only the last `scoredCount` returned values are new predictions.
public struct RollingWindow: Sendable, Equatable {
  public var tokens: [Int]
  public var scoredCount: Int
}

/// Cuts `sequence` into the windows that score each of `sequence[1...]` exactly once.
///
/// Each window scores the next `stride` tokens (fewer at the end) and passes as many earlier
/// tokens as fit in `windowLength` as their context, so only windows that start at the first
/// token are shorter than `windowLength`.
/// With the default `stride = windowLength − 1`, the scored spans are disjoint and each window
/// starts right where the previous one's scores began, which is lm-evaluation-harness's
/// `loglikelihood_rolling` with a maximum length of `windowLength − 1` model inputs. A smaller
/// stride gives each token more context at the cost of more model calls.
///
/// Preconditions: `windowLength >= 2` and `1 <= stride <= windowLength - 1`.
public func rollingWindows(_ sequence: [Int], windowLength: Int, stride: Int) -> [RollingWindow] {
  precondition(windowLength >= 2, "window length \(windowLength) is below 2")
  precondition((1...(windowLength - 1)).contains(stride), "stride \(stride) is outside 1...\(windowLength - 1)")
  var windows: [RollingWindow] = []
  var nextTarget = 1
  while nextTarget < sequence.count {
    let end = min(nextTarget + stride, sequence.count)
    let start = max(0, end - windowLength)
    windows.append(RollingWindow(tokens: Array(sequence[start..<end]), scoredCount: end - nextTarget))
    nextTarget = end
  }
  return windows
}

/// Sums the log-probability of every token of `tokens` through `rollingWindows`.
///
/// When `model.documentPrefixToken` is set it goes in front, so all of `tokens` are scored;
/// otherwise the first token is not. Calls `onWindow` with the number of tokens each window
/// scored. Returns the sum (natural log) and the number of tokens scored.
public func rollingLoglikelihood(
  model: any EvaluationModel, tokens: [Int], windowLength: Int, stride: Int,
  onWindow: (Int) -> Void = { _ in }
) throws -> (loglikelihood: Double, scoredTokens: Int) {
  let sequence = (model.documentPrefixToken.map { [$0] } ?? []) + tokens
  var total = 0.0
  var scored = 0
  for window in rollingWindows(sequence, windowLength: windowLength, stride: stride) {
    let logprobs = try model.tokenLogprobs(window.tokens)
    guard logprobs.count == window.tokens.count - 1 else {
      throw EvaluationError.modelContractViolation(
        "tokenLogprobs returned \(logprobs.count) values for \(window.tokens.count) tokens, "
          + "expected \(window.tokens.count - 1)")
    }
    total += logprobs.suffix(window.scoredCount).reduce(0, +)
    scored += window.scoredCount
    onWindow(window.scoredCount)
  }
  return (total, scored)
}

/// Whitespace-separated words of `text` (runs of non-whitespace characters).
public func wordCount(_ text: String) -> Int {
  text.split(whereSeparator: { $0.isWhitespace }).count
}
