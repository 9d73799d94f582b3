import Foundation
import Testing
import XLModels
@testable import XLEval

/// The SmolLM2 teacher (`XLLAMA_MODEL`) against per-choice log-likelihoods computed by
/// transformers from the same GGUF weights in float32.
///
/// The fixture lists its documents by line index, so a fixture regenerated from other lines
/// works unchanged. By default only the first `defaultDocumentsPerTask` documents of each task
/// are scored to keep the release test suite fast; `XLLAMA_FULL_FIXTURES=1` scores all of them.
/// In a release build on two shared CPU cores, 5 documents per task took 10–31 s (by load) and all 160
/// documents about 72 s.
@Suite("SmolLM2 teacher against the evaluation fixture")
struct RealModelEvaluationTests {
  /// Absolute tolerance on each choice's summed log-likelihood (natural log).
  static let tolerance = 1e-3
  static let defaultDocumentsPerTask = 5

  @Test("per-choice loglikelihoods match")
  func fixtureLoglikelihoods() throws {
    guard let modelPath = ProcessInfo.processInfo.environment["XLLAMA_MODEL"],
      FileManager.default.fileExists(atPath: modelPath)
    else {
      print("XLLAMA_MODEL is unset or missing; skipping the real-model evaluation test")
      return
    }
    let fixtureURL = SharedFolders.fixtures.appendingPathComponent("smollm2_eval_loglikelihoods.json")
    let tasksFolder = SharedFolders.data.appendingPathComponent("tasks")
    guard FileManager.default.fileExists(atPath: fixtureURL.path),
      FileManager.default.fileExists(atPath: tasksFolder.path)
    else {
      print("\(fixtureURL.path) or \(tasksFolder.path) not found; skipping")
      return
    }
    let full = ProcessInfo.processInfo.environment["XLLAMA_FULL_FIXTURES"] == "1"
    var fixture = try EvaluationFixture.read(from: fixtureURL)
    if !full {
      fixture.tasks = fixture.tasks.mapValues { Array($0.prefix(Self.defaultDocumentsPerTask)) }
    }

    let started = Date()
    let model = try LanguageModelEvaluation(ModelLoader.load(modelPath))
    let loaded = Date()
    var samples: [SampleRecord] = []
    for (name, rows) in fixture.tasks.sorted(by: { $0.key < $1.key }) {
      let task = try #require(EvaluationTask(rawValue: name), "the fixture has an unknown task \(name)")
      let wanted = Set(rows.map(\.doc))
      let loader = TaskLoader(dataDirectory: SharedFolders.data, limit: (wanted.max() ?? -1) + 1)
      let documents = try loader.loadChoiceDocuments(task).documents.filter { wanted.contains($0.index) }
      #expect(documents.count == wanted.count, "\(name): found \(documents.count) of \(wanted.count) fixture documents")
      samples += try Self.score(documents, task: task, model: model)
    }
    let seconds = Date().timeIntervalSince(loaded)

    let comparison = compareWithFixture(fixture, samples: samples, tolerance: Self.tolerance)
    print(
      "evaluation fixture (\(full ? "all" : "first \(Self.defaultDocumentsPerTask) per task") documents): "
        + "\(comparison); model loaded in \(String(format: "%.1f", loaded.timeIntervalSince(started))) s, "
        + "scored in \(String(format: "%.1f", seconds)) s")
    #expect(comparison.comparedDocuments == fixture.tasks.values.reduce(0) { $0 + $1.count })
    #expect(comparison.mismatches.isEmpty, "\(comparison)")
    #expect(comparison.greedyFlips == 0, "\(comparison)")
  }

  /// Scores `documents` as `Evaluator` does: lm-evaluation-harness token split, left truncation,
  /// and one `loglikelihoods` call per document.
  static func score(_ documents: [ChoiceDocument], task: EvaluationTask, model: LanguageModelEvaluation) throws -> [SampleRecord] {
    try documents.map { document in
      var requests: [LoglikelihoodRequest] = []
      for choice in document.choices {
        let pair = try #require(
          tokenizePair(context: choice.context, continuation: choice.continuation, encode: model.encode),
          "\(task.rawValue) document \(document.index) encodes to no tokens")
        requests.append(try #require(pair.request(maxContext: model.maxContext)))
      }
      let scores = try model.loglikelihoods(requests)
      return SampleRecord(
        task: task.rawValue, doc: document.index, gold: document.gold, loglikelihoods: scores.map(\.loglikelihood),
        isGreedy: scores.map(\.isGreedy), continuationTokens: requests.map(\.continuationTokens.count),
        normalizationLengths: document.choices.map(\.normalizationLength))
    }
  }
}
