/// Token ids of one (context, continuation) pair, split as lm-evaluation-harness splits them.
public struct TokenizedPair: Sendable, Equatable {
  public var contextTokens: [Int]
  public var continuationTokens: [Int]
  /// Whether encoding context + continuation merged tokens across the join, so the split below
  /// used the fallback.
  public var mergedAcrossJoin: Bool
}

/// Splits `context + continuation` into context and continuation tokens.
///
/// The lm-evaluation-harness rule: `ctx = encode(context)`, `whole = encode(context +
/// continuation)`, and the continuation's tokens are `whole[ctx.count...]`, conditioned on
/// `whole[..<ctx.count]`. When `whole` starts with `ctx` (the usual case, because byte-level BPE
/// pre-tokenizers split before a leading space) this returns exactly that split.
///
/// When a token of `whole` spans the join, `whole[ctx.count...]` would score part of the context
/// or miss part of the continuation, and can even be empty. Then this returns `ctx` followed by
/// `encode(continuation)`: the continuation tokens still cover exactly the continuation's text,
/// conditioned on exactly the context's tokens, at the price of a tokenization of the join that
/// the tokenizer would not produce itself.
///
/// Returns nil when the context or the continuation encodes to no token.
public func tokenizePair(
  context: String, continuation: String, encode: (String) -> [Int]
) -> TokenizedPair? {
  let contextTokens = encode(context)
  guard !contextTokens.isEmpty else { return nil }
  let whole = encode(context + continuation)
  if whole.count > contextTokens.count, whole.starts(with: contextTokens) {
    return TokenizedPair(
      contextTokens: contextTokens, continuationTokens: Array(whole[contextTokens.count...]),
      mergedAcrossJoin: false)
  }
  let continuationTokens = encode(continuation)
  guard !continuationTokens.isEmpty else { return nil }
  return TokenizedPair(
    contextTokens: contextTokens, continuationTokens: continuationTokens, mergedAcrossJoin: true)
}

extension TokenizedPair {
  /// Makes the request for a model of context length `maxContext`, cutting the context on the left
  /// so that context + continuation, less the last token, fits (the lm-evaluation-harness rule).
  /// Returns nil when even one context token cannot fit.
  public func request(maxContext: Int) -> LoglikelihoodRequest? {
    let contextRoom = maxContext + 1 - continuationTokens.count
    guard contextRoom >= 1 else { return nil }
    return LoglikelihoodRequest(
      contextTokens: Array(contextTokens.suffix(contextRoom)), continuationTokens: continuationTokens)
  }
}
