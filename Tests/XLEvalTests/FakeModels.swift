import Foundation
@testable import XLEval

/// A character-level model: each Unicode scalar is one token (its code point), and
/// log p(t | previous p) = −(((t + p) mod 5) + 1) / 10, greedy exactly when (t + p) mod 5 == 0.
/// Scores depend only on the previous token, so any window reproduces full-context scores.
final class CharacterModel: EvaluationModel {
  let maxContext: Int
  let documentPrefixToken: Int?
  private(set) var requestBatches: [[LoglikelihoodRequest]] = []
  private(set) var windows: [[Int]] = []

  init(maxContext: Int = 4096, documentPrefixToken: Int? = 3) {
    self.maxContext = maxContext
    self.documentPrefixToken = documentPrefixToken
  }

  func encode(_ text: String) -> [Int] {
    text.unicodeScalars.map { Int($0.value) }
  }

  static func logprob(_ token: Int, after previous: Int) -> Double {
    -Double((token + previous) % 5 + 1) / 10
  }

  func loglikelihoods(_ requests: [LoglikelihoodRequest]) throws -> [LoglikelihoodResult] {
    requestBatches.append(requests)
    return requests.map { request in
      var previous = request.contextTokens.last!
      var total = 0.0
      var greedy = true
      for token in request.continuationTokens {
        total += Self.logprob(token, after: previous)
        greedy = greedy && (token + previous) % 5 == 0
        previous = token
      }
      return LoglikelihoodResult(loglikelihood: total, isGreedy: greedy)
    }
  }

  func tokenLogprobs(_ tokens: [Int]) throws -> [Double] {
    precondition(tokens.count >= 2 && tokens.count <= maxContext)
    windows.append(tokens)
    return (1..<tokens.count).map { Self.logprob(tokens[$0], after: tokens[$0 - 1]) }
  }

  var allRequests: [LoglikelihoodRequest] { requestBatches.flatMap { $0 } }
}

/// Character tokens, except that listed two-character strings become one token (id 100000 + n)
/// when read left to right, so encoding can merge the last context character with the first
/// continuation character.
func mergingEncoder(_ merges: [String]) -> (String) -> [Int] {
  return { text in
    let scalars = Array(text.unicodeScalars)
    var tokens: [Int] = []
    var position = 0
    while position < scalars.count {
      if position + 1 < scalars.count,
        let merge = merges.firstIndex(of: String(scalars[position]) + String(scalars[position + 1]))
      {
        tokens.append(100_000 + merge)
        position += 2
      } else {
        tokens.append(Int(scalars[position].value))
        position += 1
      }
    }
    return tokens
  }
}

/// A temporary data directory with `tasks/` and `eval/`, removed by `remove()`.
struct TemporaryDataDirectory {
  let url: URL

  init() throws {
    url = FileManager.default.temporaryDirectory.appendingPathComponent("xleval-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url.appendingPathComponent("tasks"), withIntermediateDirectories: true)
    try FileManager.default.createDirectory(at: url.appendingPathComponent("eval"), withIntermediateDirectories: true)
  }

  func write(_ relativePath: String, _ text: String) throws {
    try Data(text.utf8).write(to: url.appendingPathComponent(relativePath))
  }

  func remove() {
    try? FileManager.default.removeItem(at: url)
  }
}

/// Shared data and fixture folders from the environment, or beside the package.
enum SharedFolders {
  static var packageRoot: URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
  }

  static var data: URL {
    if let path = ProcessInfo.processInfo.environment["XLLAMA_DATA"] { return URL(fileURLWithPath: path) }
    return packageRoot.appendingPathComponent("../shared/data").standardized
  }

  static var fixtures: URL {
    if let path = ProcessInfo.processInfo.environment["XLLAMA_FIXTURES"] { return URL(fileURLWithPath: path) }
    return packageRoot.appendingPathComponent("../shared/reference/fixtures").standardized
  }
}
