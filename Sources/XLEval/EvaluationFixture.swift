import Foundation

/// Per-choice scores of a reference model on the first documents of each task, in the format
/// written by the PyTorch fixture script (`{"documents_from": K, "tasks": {task: [row]}}`).
public struct EvaluationFixture: Sendable, Equatable {
  public var documentsFrom: Int
  public var tasks: [String: [FixtureDocument]]

  /// Reads a fixture file, throwing `EvaluationError.malformedFixture` naming the bad field.
  public static func read(from url: URL) throws -> EvaluationFixture {
    guard FileManager.default.fileExists(atPath: url.path) else {
      throw EvaluationError.fileNotFound(path: url.path)
    }
    let data: Data
    do {
      data = try Data(contentsOf: url)
    } catch {
      throw EvaluationError.unreadableFile(path: url.path, reason: error.localizedDescription)
    }
    let file: FixtureFile
    do {
      file = try JSONDecoder().decode(FixtureFile.self, from: data)
    } catch let error as DecodingError {
      throw EvaluationError.malformedFixture(path: url.path, reason: "\(error)")
    }
    for (task, rows) in file.tasks {
      for row in rows {
        let counts = [row.loglikelihoods.count, row.isGreedy.count, row.continuationTokens.count]
        guard Set(counts).count == 1 else {
          throw EvaluationError.malformedFixture(
            path: url.path, reason: "\(task) document \(row.doc) has per-choice lists of lengths \(counts)")
        }
      }
    }
    return EvaluationFixture(documentsFrom: file.documentsFrom, tasks: file.tasks)
  }
}

/// One document of a fixture: the same fields as a `SampleRecord` without task and lengths.
public struct FixtureDocument: Codable, Sendable, Equatable {
  public var doc: Int
  public var gold: Int?
  public var loglikelihoods: [Double]
  public var isGreedy: [Bool]
  public var continuationTokens: [Int]

  enum CodingKeys: String, CodingKey {
    case doc, gold, loglikelihoods
    case isGreedy = "is_greedy"
    case continuationTokens = "continuation_tokens"
  }
}

private struct FixtureFile: Decodable {
  var documentsFrom: Int
  var tasks: [String: [FixtureDocument]]

  enum CodingKeys: String, CodingKey {
    case documentsFrom = "documents_from"
    case tasks
  }
}

/// Differences between evaluation samples and a fixture.
public struct FixtureComparison: Sendable, CustomStringConvertible {
  /// Fixture documents that had a sample to compare with.
  public var comparedDocuments: Int
  /// Largest |loglikelihood difference| over all compared choices (natural log).
  public var maxLoglikelihoodDifference: Double
  /// Choices whose greedy flag differs, which near-ties can cause legitimately.
  public var greedyFlips: Int
  /// Hard disagreements: missing samples, other gold labels or choice counts, other
  /// continuation token counts, loglikelihoods beyond tolerance.
  public var mismatches: [String]

  public var description: String {
    "\(comparedDocuments) documents compared, max |Δ loglikelihood| "
      + "\(String(format: "%.3g", maxLoglikelihoodDifference)), \(greedyFlips) greedy flips, "
      + "\(mismatches.count) mismatches" + (mismatches.isEmpty ? "" : ":\n" + mismatches.joined(separator: "\n"))
  }
}

/// Compares `samples` with every document of `fixture` on the tasks both cover.
///
/// A fixture document of a covered task without a sample of the same `doc` is a mismatch, so
/// evaluate at least `documentsFrom + count` lines of each task. Loglikelihoods must agree
/// within `tolerance` (natural log, absolute).
public func compareWithFixture(
  _ fixture: EvaluationFixture, samples: [SampleRecord], tolerance: Double
) -> FixtureComparison {
  var byKey: [String: SampleRecord] = [:]
  for sample in samples { byKey["\(sample.task)#\(sample.doc)"] = sample }
  let coveredTasks = Set(samples.map(\.task))

  var comparison = FixtureComparison(comparedDocuments: 0, maxLoglikelihoodDifference: 0, greedyFlips: 0, mismatches: [])
  for task in fixture.tasks.keys.sorted() where coveredTasks.contains(task) {
    for expected in fixture.tasks[task] ?? [] {
      let place = "\(task) document \(expected.doc)"
      guard let sample = byKey["\(task)#\(expected.doc)"] else {
        comparison.mismatches.append("\(place): no sample")
        continue
      }
      comparison.comparedDocuments += 1
      if sample.gold != expected.gold {
        comparison.mismatches.append("\(place): gold \(String(describing: sample.gold)), fixture \(String(describing: expected.gold))")
      }
      guard sample.loglikelihoods.count == expected.loglikelihoods.count else {
        comparison.mismatches.append(
          "\(place): \(sample.loglikelihoods.count) choices, fixture \(expected.loglikelihoods.count)")
        continue
      }
      for choice in expected.loglikelihoods.indices {
        let difference = abs(sample.loglikelihoods[choice] - expected.loglikelihoods[choice])
        comparison.maxLoglikelihoodDifference = max(comparison.maxLoglikelihoodDifference, difference)
        if !(difference <= tolerance) {
          comparison.mismatches.append(
            "\(place) choice \(choice): loglikelihood \(sample.loglikelihoods[choice]), "
              + "fixture \(expected.loglikelihoods[choice]), difference \(difference) > \(tolerance)")
        }
        if sample.continuationTokens[choice] != expected.continuationTokens[choice] {
          comparison.mismatches.append(
            "\(place) choice \(choice): \(sample.continuationTokens[choice]) continuation tokens, "
              + "fixture \(expected.continuationTokens[choice])")
        }
        if sample.isGreedy[choice] != expected.isGreedy[choice] { comparison.greedyFlips += 1 }
      }
    }
  }
  return comparison
}
