import Foundation

/// Reads task files from a data directory: `tasks/<task>.jsonl` for the choice tasks,
/// `eval/wikitext2_test.raw.txt` and `eval/imdb_test_1000.jsonl` for the perplexity tasks.
///
/// JSON Lines files are split on "\n" only (a trailing "\r" is dropped), because review texts
/// contain characters such as U+2028 that other line splitters treat as line breaks. The empty
/// segment after a final newline is not a line; any other blank line is malformed.
public struct TaskLoader: Sendable {
  public var dataDirectory: URL
  /// Read only the first `limit` lines of each JSON Lines file; malformed lines among them count.
  /// WikiText-2 is one document, so a limit does not shorten it.
  public var limit: Int?
  public var policy: MalformedLinePolicy
  /// The file of the `text` task, when it is not `eval/text.txt` in the data directory.
  public var textFile: URL?

  public init(dataDirectory: URL, limit: Int? = nil, policy: MalformedLinePolicy = .fail, textFile: URL? = nil) {
    self.dataDirectory = dataDirectory
    self.limit = limit
    self.policy = policy
    self.textFile = textFile
  }

  /// Returns the file of `task`: inside the data directory, or `textFile` for the `text` task.
  public func url(of task: EvaluationTask) -> URL {
    if task == .text, let textFile { return textFile }
    return dataDirectory.appendingPathComponent(task.relativePath)
  }

  /// Loads the documents of a multiple-choice or LAMBADA task.
  public func loadChoiceDocuments(_ task: EvaluationTask) throws -> LoadedDocuments<ChoiceDocument> {
    precondition(!task.isPerplexityTask, "\(task.rawValue) is a perplexity task")
    return try loadJSONLines(url(of: task)) { line, index in
      try Self.parseChoiceDocument(task: task, line: line, index: index)
    }
  }

  /// Loads the texts of a perplexity task: the whole WikiText-2 file as one document, or the
  /// `text` field of each IMDB line.
  ///
  /// NOTE: lm-evaluation-harness's `wikitext` task scores each article after detokenizing it, so
  /// its word perplexity is not directly comparable with this whole-file raw-text figure.
  public func loadTextDocuments(_ task: EvaluationTask) throws -> LoadedDocuments<TextDocument> {
    precondition(task.isPerplexityTask, "\(task.rawValue) is not a perplexity task")
    let fileURL = url(of: task)
    if task == .wikitext2 || task == .text {
      let text = try readText(fileURL)
      return LoadedDocuments(documents: [TextDocument(index: 0, text: text)], skippedLines: [])
    }
    return try loadJSONLines(fileURL) { line, index in
      let row = try decodeRow(TextRow.self, from: line)
      return TextDocument(index: index, text: row.text)
    }
  }

  /// Builds the choices of one task-file line exactly as the lm-evaluation-harness task does.
  ///
  /// Throws `LineProblem` with a one-line reason when the line is invalid JSON, lacks a field,
  /// has a field of the wrong type, or has a label outside the choices.
  static func parseChoiceDocument(task: EvaluationTask, line: String, index: Int) throws -> ChoiceDocument {
    switch task {
    case .hellaswag:
      let row = try decodeRow(HellaSwagRow.self, from: line)
      return try document(task, index, context: row.ctx, choiceTexts: row.endings, gold: row.label, label: "label")
    case .piqa:
      let row = try decodeRow(PIQARow.self, from: line)
      return try document(
        task, index, context: "Question: \(row.goal)\nAnswer:", choiceTexts: [row.sol1, row.sol2],
        gold: row.label, label: "label")
    case .arcEasy, .arcChallenge:
      let row = try decodeRow(QueryRow.self, from: line)
      return try document(task, index, context: row.query + "\nAnswer:", choiceTexts: row.choices, gold: row.gold, label: "gold")
    case .openbookQA:
      let row = try decodeRow(QueryRow.self, from: line)
      return try document(task, index, context: row.query, choiceTexts: row.choices, gold: row.gold, label: "gold")
    case .boolq:
      // The continuations are always " no" and " yes", whatever the line's `choices` field holds.
      let row = try decodeRow(BoolQRow.self, from: line)
      return try document(task, index, context: row.query + "\nAnswer:", choiceTexts: ["no", "yes"], gold: row.gold, label: "gold")
    case .winogrande:
      // Partial scoring: the same continuation after each filled-in option.
      let row = try decodeRow(WinograndeRow.self, from: line)
      guard !row.contextOptions.isEmpty else { throw LineProblem("field 'context_options' is empty") }
      try checkLabel(row.gold, choiceCount: row.contextOptions.count, field: "gold")
      let continuation = " " + row.continuation
      let choices = row.contextOptions.map {
        Choice(context: $0, continuation: continuation, normalizationLength: row.continuation.unicodeScalars.count)
      }
      return ChoiceDocument(task: task, index: index, choices: choices, gold: row.gold)
    case .lambadaOpenAI:
      let row = try decodeRow(LambadaRow.self, from: line)
      let choice = Choice(
        context: row.context, continuation: " " + row.continuation,
        normalizationLength: row.continuation.unicodeScalars.count)
      return ChoiceDocument(task: task, index: index, choices: [choice], gold: nil)
    case .wikitext2, .imdb, .text:
      preconditionFailure("\(task.rawValue) has no choices")
    }
  }

  private static func document(
    _ task: EvaluationTask, _ index: Int, context: String, choiceTexts: [String], gold: Int, label: String
  ) throws -> ChoiceDocument {
    guard !choiceTexts.isEmpty else { throw LineProblem("the document has no choices") }
    try checkLabel(gold, choiceCount: choiceTexts.count, field: label)
    let choices = choiceTexts.map {
      Choice(context: context, continuation: " " + $0, normalizationLength: $0.unicodeScalars.count)
    }
    return ChoiceDocument(task: task, index: index, choices: choices, gold: gold)
  }

  private static func checkLabel(_ gold: Int, choiceCount: Int, field: String) throws {
    guard (0..<choiceCount).contains(gold) else {
      throw LineProblem("field '\(field)' is \(gold), expected 0...\(choiceCount - 1) for \(choiceCount) choices")
    }
  }

  private func readText(_ fileURL: URL) throws -> String {
    guard FileManager.default.fileExists(atPath: fileURL.path) else {
      throw EvaluationError.fileNotFound(path: fileURL.path)
    }
    let data: Data
    do {
      data = try Data(contentsOf: fileURL)
    } catch {
      throw EvaluationError.unreadableFile(path: fileURL.path, reason: error.localizedDescription)
    }
    guard let text = String(data: data, encoding: .utf8) else {
      throw EvaluationError.unreadableFile(path: fileURL.path, reason: "the file is not valid UTF-8")
    }
    return text
  }

  private func loadJSONLines<Document>(
    _ fileURL: URL, parse: (String, Int) throws -> Document
  ) throws -> LoadedDocuments<Document> {
    let text = try readText(fileURL)
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    if lines.last == "" { lines.removeLast() }
    if let limit { lines = Array(lines.prefix(limit)) }

    var documents: [Document] = []
    var skipped: [SkippedLine] = []
    for (index, rawLine) in lines.enumerated() {
      let line = rawLine.hasSuffix("\r") ? String(rawLine.dropLast()) : String(rawLine)
      do {
        documents.append(try parse(line, index))
      } catch let problem as LineProblem {
        switch policy {
        case .fail:
          throw EvaluationError.malformedLine(path: fileURL.path, line: index + 1, reason: problem.reason)
        case .skip:
          skipped.append(SkippedLine(path: fileURL.path, line: index + 1, reason: problem.reason))
        }
      }
    }
    return LoadedDocuments(documents: documents, skippedLines: skipped)
  }
}

/// The reason a line is not a valid document.
struct LineProblem: Error {
  var reason: String
  init(_ reason: String) { self.reason = reason }
}

/// Decodes one JSON object line, turning decoding errors into one-line reasons.
func decodeRow<Row: Decodable>(_ type: Row.Type, from line: String) throws -> Row {
  if line.trimmingCharacters(in: .whitespaces).isEmpty { throw LineProblem("empty line") }
  do {
    return try JSONDecoder().decode(Row.self, from: Data(line.utf8))
  } catch let error as DecodingError {
    throw LineProblem(describe(error))
  }
}

private func describe(_ error: DecodingError) -> String {
  func path(_ codingPath: [any CodingKey]) -> String {
    codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
  }
  switch error {
  case .keyNotFound(let key, let context):
    let parent = path(context.codingPath)
    return "missing field '\(parent.isEmpty ? key.stringValue : parent + "." + key.stringValue)'"
  case .typeMismatch(let expected, let context):
    if context.codingPath.isEmpty { return "the line is not a JSON object" }
    return "field '\(path(context.codingPath))' has the wrong type, expected \(expected)"
  case .valueNotFound(let expected, let context):
    return "field '\(path(context.codingPath))' is null, expected \(expected)"
  case .dataCorrupted(let context):
    if context.codingPath.isEmpty { return "invalid JSON" }
    return "field '\(path(context.codingPath))' is invalid: \(context.debugDescription)"
  @unknown default:
    return "invalid document"
  }
}

private struct HellaSwagRow: Decodable {
  var ctx: String
  var endings: [String]
  var label: Int
}

private struct PIQARow: Decodable {
  var goal: String
  var sol1: String
  var sol2: String
  var label: Int
}

private struct QueryRow: Decodable {
  var query: String
  var choices: [String]
  var gold: Int
}

private struct BoolQRow: Decodable {
  var query: String
  var gold: Int
}

private struct WinograndeRow: Decodable {
  var contextOptions: [String]
  var continuation: String
  var gold: Int

  enum CodingKeys: String, CodingKey {
    case contextOptions = "context_options"
    case continuation
    case gold
  }
}

private struct LambadaRow: Decodable {
  var context: String
  var continuation: String
}

private struct TextRow: Decodable {
  var text: String
}
