import Foundation

/// Settings of one evaluation run.
public struct EvaluationConfiguration: Sendable {
  /// Folder holding `tasks/` and `eval/`.
  public var dataDirectory: URL
  public var tasks: [EvaluationTask]
  /// Only the first `limit` lines of each task file.
  public var limit: Int?
  public var malformedLinePolicy: MalformedLinePolicy
  /// Documents whose requests go to the model in one `loglikelihoods` call.
  public var documentsPerBatch: Int
  /// Tokens per rolling-perplexity window; nil means the model's `maxContext`.
  public var windowLength: Int?
  /// New tokens scored per window; nil means `windowLength − 1` (disjoint windows).
  public var stride: Int?
  /// The file the `text` task scores; nil means `eval/text.txt` in the data directory.
  public var textFile: URL?

  public init(
    dataDirectory: URL, tasks: [EvaluationTask], limit: Int? = nil,
    malformedLinePolicy: MalformedLinePolicy = .fail, documentsPerBatch: Int = 16,
    windowLength: Int? = nil, stride: Int? = nil, textFile: URL? = nil
  ) {
    self.textFile = textFile
    self.dataDirectory = dataDirectory
    self.tasks = tasks
    self.limit = limit
    self.malformedLinePolicy = malformedLinePolicy
    self.documentsPerBatch = documentsPerBatch
    self.windowLength = windowLength
    self.stride = stride
  }
}

/// Progress of the running task: documents for choice tasks, tokens for perplexity tasks.
public struct EvaluationProgress: Sendable, CustomStringConvertible {
  public var task: EvaluationTask
  public var done: Int
  public var total: Int
  /// "documents" or "tokens".
  public var unit: String
  /// Seconds since the task started.
  public var elapsed: Double
  /// Units per second so far.
  public var rate: Double

  public var description: String {
    let percent = total > 0 ? 100 * Double(done) / Double(total) : 100
    return "\(task.rawValue): \(done)/\(total) \(unit) (\(String(format: "%.1f", percent))%), "
      + "\(String(format: "%.1f", elapsed)) s, \(String(format: "%.1f", rate)) \(unit)/s"
  }
}

/// Scores of one task.
public struct TaskResult: Codable, Sendable, Equatable {
  public var task: String
  /// Documents scored.
  public var documents: Int
  /// Lines left out under `MalformedLinePolicy.skip`.
  public var skippedLines: [SkippedLine]
  /// Choices whose tokens merged across the context/continuation join (see `tokenizePair`).
  public var mergedJoins: Int
  /// Requests whose context was cut on the left to fit the model.
  public var truncatedContexts: Int
  public var metrics: [MetricValue]
  public var seconds: Double

  public func metric(_ name: String) -> MetricValue? {
    metrics.first { $0.name == name }
  }

  enum CodingKeys: String, CodingKey {
    case task, documents, metrics, seconds
    case skippedLines = "skipped_lines"
    case mergedJoins = "merged_joins"
    case truncatedContexts = "truncated_contexts"
  }
}

/// Everything written to the results JSON file.
public struct EvaluationResults: Codable, Sendable, Equatable {
  public var model: String
  public var limit: Int?
  public var windowLength: Int
  public var stride: Int
  public var tasks: [TaskResult]

  public func task(_ name: String) -> TaskResult? {
    tasks.first { $0.task == name }
  }

  enum CodingKeys: String, CodingKey {
    case model, limit, stride, tasks
    case windowLength = "window_length"
  }
}

/// Results plus the per-document samples of the choice tasks.
public struct EvaluationRun: Sendable {
  public var results: EvaluationResults
  public var samples: [SampleRecord]
}

/// Runs the configured tasks on one model.
public struct Evaluator {
  public var model: any EvaluationModel
  public var modelName: String
  public var configuration: EvaluationConfiguration

  public init(model: any EvaluationModel, modelName: String, configuration: EvaluationConfiguration) {
    self.model = model
    self.modelName = modelName
    self.configuration = configuration
  }

  /// Evaluates every configured task in order, reporting progress after each batch or window.
  public func run(progress: (EvaluationProgress) -> Void = { _ in }) throws -> EvaluationRun {
    let (windowLength, stride) = try perplexityWindow()
    var taskResults: [TaskResult] = []
    var samples: [SampleRecord] = []
    for task in configuration.tasks {
      if task.isPerplexityTask {
        taskResults.append(try evaluatePerplexity(task, windowLength: windowLength, stride: stride, progress: progress))
      } else {
        let (result, taskSamples) = try evaluateChoices(task, progress: progress)
        taskResults.append(result)
        samples.append(contentsOf: taskSamples)
      }
    }
    let results = EvaluationResults(
      model: modelName, limit: configuration.limit, windowLength: windowLength, stride: stride,
      tasks: taskResults)
    return EvaluationRun(results: results, samples: samples)
  }

  /// Resolves the rolling window length and stride from the defaults and checks them against
  /// the model.
  public func perplexityWindow() throws -> (windowLength: Int, stride: Int) {
    let windowLength = configuration.windowLength ?? model.maxContext
    guard (2...max(2, model.maxContext)).contains(windowLength), model.maxContext >= 2 else {
      throw EvaluationError.invalidOption(
        name: "window length", value: "\(windowLength)", expected: "2...\(model.maxContext) (the model's maximum context)")
    }
    let stride = configuration.stride ?? windowLength - 1
    guard (1...(windowLength - 1)).contains(stride) else {
      throw EvaluationError.invalidOption(name: "stride", value: "\(stride)", expected: "1...\(windowLength - 1)")
    }
    return (windowLength, stride)
  }

  private var loader: TaskLoader {
    TaskLoader(
      dataDirectory: configuration.dataDirectory, limit: configuration.limit,
      policy: configuration.malformedLinePolicy, textFile: configuration.textFile)
  }

  private func evaluateChoices(
    _ task: EvaluationTask, progress: (EvaluationProgress) -> Void
  ) throws -> (TaskResult, [SampleRecord]) {
    let started = Date()
    let loaded = try loader.loadChoiceDocuments(task)
    let documents = loaded.documents
    var samples: [SampleRecord] = []
    var mergedJoins = 0
    var truncatedContexts = 0
    let batchSize = max(1, configuration.documentsPerBatch)

    for batchStart in stride(from: 0, to: documents.count, by: batchSize) {
      let batch = documents[batchStart..<min(batchStart + batchSize, documents.count)]
      var requests: [LoglikelihoodRequest] = []
      var continuationCounts: [[Int]] = []
      for document in batch {
        var counts: [Int] = []
        for choice in document.choices {
          let pair = try tokenize(choice, task: task, document: document.index)
          if pair.mergedAcrossJoin { mergedJoins += 1 }
          guard let request = pair.request(maxContext: model.maxContext) else {
            throw EvaluationError.continuationTooLong(
              task: task.rawValue, document: document.index, tokens: pair.continuationTokens.count,
              maxContext: model.maxContext)
          }
          if request.contextTokens.count < pair.contextTokens.count { truncatedContexts += 1 }
          requests.append(request)
          counts.append(request.continuationTokens.count)
        }
        continuationCounts.append(counts)
      }

      let scores = try model.loglikelihoods(requests)
      guard scores.count == requests.count else {
        throw EvaluationError.modelContractViolation(
          "loglikelihoods returned \(scores.count) results for \(requests.count) requests")
      }
      var next = 0
      for (document, counts) in zip(batch, continuationCounts) {
        let own = scores[next..<(next + counts.count)]
        next += counts.count
        samples.append(
          SampleRecord(
            task: task.rawValue, doc: document.index, gold: document.gold,
            loglikelihoods: own.map(\.loglikelihood), isGreedy: own.map(\.isGreedy),
            continuationTokens: counts, normalizationLengths: document.choices.map(\.normalizationLength)))
      }
      progress(makeProgress(task, done: samples.count, total: documents.count, unit: "documents", since: started))
    }

    let result = TaskResult(
      task: task.rawValue, documents: samples.count, skippedLines: loaded.skippedLines,
      mergedJoins: mergedJoins, truncatedContexts: truncatedContexts,
      metrics: choiceMetrics(task: task, samples: samples), seconds: Date().timeIntervalSince(started))
    return (result, samples)
  }

  private func tokenize(_ choice: Choice, task: EvaluationTask, document: Int) throws -> TokenizedPair {
    if let pair = tokenizePair(context: choice.context, continuation: choice.continuation, encode: model.encode) {
      return pair
    }
    let what = model.encode(choice.context).isEmpty ? "context" : "continuation"
    throw EvaluationError.emptyTokenization(task: task.rawValue, document: document, what: what)
  }

  private func evaluatePerplexity(
    _ task: EvaluationTask, windowLength: Int, stride: Int, progress: (EvaluationProgress) -> Void
  ) throws -> TaskResult {
    let started = Date()
    let loaded = try loader.loadTextDocuments(task)
    let tokenized = loaded.documents.map { model.encode($0.text) }
    let prefixed = model.documentPrefixToken != nil
    let totalTokens = tokenized.reduce(0) { $0 + ($1.count - (prefixed ? 0 : min(1, $1.count))) }

    var scoredSoFar = 0
    var measured: [PerplexityDocument] = []
    for (document, tokens) in zip(loaded.documents, tokenized) {
      let (loglikelihood, scored) = try rollingLoglikelihood(
        model: model, tokens: tokens, windowLength: windowLength, stride: stride
      ) { count in
        scoredSoFar += count
        progress(makeProgress(task, done: scoredSoFar, total: totalTokens, unit: "tokens", since: started))
      }
      measured.append(
        PerplexityDocument(
          loglikelihood: loglikelihood, tokens: scored, words: wordCount(document.text),
          bytes: document.text.utf8.count))
    }
    return TaskResult(
      task: task.rawValue, documents: measured.count, skippedLines: loaded.skippedLines, mergedJoins: 0,
      truncatedContexts: 0, metrics: perplexityMetrics(measured), seconds: Date().timeIntervalSince(started))
  }

  private func makeProgress(
    _ task: EvaluationTask, done: Int, total: Int, unit: String, since started: Date
  ) -> EvaluationProgress {
    let elapsed = Date().timeIntervalSince(started)
    return EvaluationProgress(
      task: task, done: done, total: total, unit: unit, elapsed: elapsed,
      rate: elapsed > 0 ? Double(done) / elapsed : 0)
  }
}
