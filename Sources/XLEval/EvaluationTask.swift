import Foundation

/// A supported benchmark, named as lm-evaluation-harness names it.
public enum EvaluationTask: String, CaseIterable, Codable, Sendable {
  case hellaswag
  case piqa
  case arcEasy = "arc_easy"
  case arcChallenge = "arc_challenge"
  case openbookQA = "openbook_qa"
  case boolq
  case winogrande
  case lambadaOpenAI = "lambada_openai"
  case wikitext2
  case imdb
  /// Perplexity of any UTF-8 text file, scored whole as one document (`eval/text.txt` in the
  /// data directory unless the configuration names another file).
  case text

  /// Whether the task measures rolling perplexity of plain text rather than scoring choices.
  public var isPerplexityTask: Bool {
    self == .wikitext2 || self == .imdb || self == .text
  }

  /// The data file of the task, relative to the data directory.
  public var relativePath: String {
    switch self {
    case .wikitext2: return "eval/wikitext2_test.raw.txt"
    case .imdb: return "eval/imdb_test_1000.jsonl"
    case .text: return "eval/text.txt"
    default: return "tasks/\(rawValue).jsonl"
    }
  }

  /// Parses a comma-separated list such as `hellaswag,piqa,wikitext2`. Blanks around names are
  /// ignored, and `all` means every task but `text`.
  public static func parseList(_ list: String) throws -> [EvaluationTask] {
    var tasks: [EvaluationTask] = []
    for name in list.split(separator: ",") {
      let trimmed = name.trimmingCharacters(in: .whitespaces)
      if trimmed == "all" {
        tasks.append(contentsOf: allCases.filter { $0 != .text })
      } else if let task = EvaluationTask(rawValue: trimmed) {
        tasks.append(task)
      } else {
        throw EvaluationError.unknownTask(trimmed, known: allCases.map(\.rawValue))
      }
    }
    var seen = Set<EvaluationTask>()
    return tasks.filter { seen.insert($0).inserted }
  }
}

/// The handling of a task-file line that is not a valid document.
public enum MalformedLinePolicy: String, Codable, Sendable {
  /// Stop the run with `EvaluationError.malformedLine`.
  case fail
  /// Leave the line out, and list it in the task's results.
  case skip
}

/// A line that was left out under `MalformedLinePolicy.skip`.
public struct SkippedLine: Codable, Sendable, Equatable {
  public var path: String
  /// Line number, counting from 1.
  public var line: Int
  public var reason: String
}

/// One option of a multiple-choice document: a context followed by a continuation.
public struct Choice: Sendable, Equatable {
  public var context: String
  public var continuation: String
  /// Characters (Unicode scalars, like Python's `len`) of the choice text without the leading
  /// space delimiter; `acc_norm` divides the loglikelihood by it, as lm-evaluation-harness does.
  public var normalizationLength: Int
}

/// A scored document of a multiple-choice or LAMBADA task.
public struct ChoiceDocument: Sendable, Equatable {
  public var task: EvaluationTask
  /// Zero-based line index in the task file (the `doc` of samples and fixtures).
  public var index: Int
  public var choices: [Choice]
  /// Index of the correct choice; nil for LAMBADA, whose single continuation is checked greedily.
  public var gold: Int?
}

/// A text whose rolling perplexity is measured.
public struct TextDocument: Sendable, Equatable {
  public var index: Int
  public var text: String
}

/// The documents read from one task file and the lines left out.
public struct LoadedDocuments<Document: Sendable>: Sendable {
  public var documents: [Document]
  public var skippedLines: [SkippedLine]
}
