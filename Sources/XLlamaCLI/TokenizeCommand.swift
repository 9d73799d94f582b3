import Foundation
import XLlama

/// Reads `--text` or `--file`, exactly one of them.
func textInput(_ options: ParsedOptions, verb: String) throws -> String {
  switch (options.string("--text"), options.string("--file")) {
  case (let text?, nil):
    return text
  case (nil, let path?):
    guard let data = FileManager.default.contents(atPath: path) else {
      throw CommandLineError.invalidValue(option: "--file", value: path, expected: "a readable file")
    }
    guard let text = String(data: data, encoding: .utf8) else {
      throw CommandLineError.invalidValue(option: "--file", value: path, expected: "a UTF-8 text file")
    }
    return text
  case (nil, nil):
    throw CommandLineError.missingRequired(verb: verb, option: "--text or --file")
  default:
    throw CommandLineError.conflicting("give either --text or --file, not both")
  }
}

enum TokenizeCommand: Command {
  static let name = "tokenize"
  static let summary = "Print the token ids of a text as a JSON array."
  static let usage = "--model PATH (--text TEXT | --file FILE)"
  static let options: [OptionSpec] = [
    modelOption,
    OptionSpec(name: "--text", valueName: "TEXT", help: "the text to tokenize"),
    OptionSpec(name: "--file", valueName: "FILE", help: "a UTF-8 file to tokenize"),
    OptionSpec(name: "--time", valueName: nil, help: "report the tokenization time on stderr"),
  ]

  static func run(_ options: ParsedOptions) throws {
    let text = try textInput(options, verb: name)
    let (_, _, tokenizer, _, _) = try ModelLoader.open(try options.required("--model"))
    let start = Date()
    let ids = tokenizer.encode(text)
    let seconds = Date().timeIntervalSince(start)
    print("[" + ids.map(String.init).joined(separator: ", ") + "]")
    if options.flag("--time") {
      stderrLine(String(format: "%d tokens from %d bytes in %.3f s", ids.count, text.utf8.count, seconds))
    }
  }
}

enum ScoreCommand: Command {
  static let name = "score"
  static let summary = "Print each token's log-probability given the tokens before it, as JSON."
  static let usage = "--model PATH (--text TEXT | --ids JSON)"
  static let options: [OptionSpec] = [
    modelOption,
    OptionSpec(name: "--text", valueName: "TEXT", help: "the text to score"),
    OptionSpec(name: "--ids", valueName: "JSON", help: "token ids to score, e.g. [504, 3575, 282]"),
    threadsOption,
  ]

  static func run(_ options: ParsedOptions) throws {
    try applyThreads(options)
    let ids: [Int]
    let loaded: LoadedModel
    switch (options.string("--text"), options.string("--ids")) {
    case (let text?, nil):
      loaded = try loadModel(options)
      ids = loaded.tokenizer.encode(text)
    case (nil, let json?):
      ids = try parseIDs(json, option: "--ids")
      loaded = try loadModel(options)
    case (nil, nil):
      throw CommandLineError.missingRequired(verb: name, option: "--text or --ids")
    default:
      throw CommandLineError.conflicting("give either --text or --ids, not both")
    }
    guard ids.count >= 2 else {
      throw CommandLineError.conflicting(
        "the input has \(ids.count) token\(ids.count == 1 ? "" : "s"); scoring needs at least 2, because the first token has no prediction")
    }
    let logits = try loaded.model.makeSession().append(ids, logits: .all)
    let v = loaded.configuration.vocabularySize
    var rows: [[String: Any]] = []
    var total = 0.0
    var logProbabilities = [Float](repeating: 0, count: v)
    logits.data.withUnsafeBufferPointer { all in
      for position in 1..<ids.count {
        Kernels.logSoftmax(all.baseAddress! + (position - 1) * v, count: v, into: &logProbabilities)
        let value = Double(logProbabilities[ids[position]])
        total += value
        rows.append(["position": position, "id": ids[position], "token": loaded.tokenizer.decode([ids[position]]), "logprob": value])
      }
    }
    print(jsonText(["tokens": rows, "sum_logprob": total, "mean_logprob": total / Double(ids.count - 1), "first_id": ids[0]]))
  }
}
