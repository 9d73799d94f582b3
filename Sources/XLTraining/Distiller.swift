import Foundation
import XLTensors

/// A snapshot after one distillation step, passed to the progress callback.
public struct DistillationProgress: Sendable, Equatable, CustomStringConvertible {
  public var stage: MOHAWKStage
  /// Updates finished in this stage, counting from 1.
  public var step: Int
  public var totalSteps: Int
  /// Mean training loss over the step's micro-batches.
  public var loss: Float
  /// Learning rate the step's update used.
  public var learningRate: Float
  /// Global gradient norm before clipping.
  public var gradientNorm: Float
  /// Training tokens per second since this process started (or resumed) the stage.
  public var tokensPerSecond: Double
  /// Estimated seconds until the stage ends, from the mean step time so far.
  public var secondsRemaining: Double
  /// Validation loss, when this step measured it.
  public var validationLoss: Float?

  public init(
    stage: MOHAWKStage, step: Int, totalSteps: Int, loss: Float, learningRate: Float, gradientNorm: Float,
    tokensPerSecond: Double, secondsRemaining: Double, validationLoss: Float? = nil
  ) {
    self.stage = stage
    self.step = step
    self.totalSteps = totalSteps
    self.loss = loss
    self.learningRate = learningRate
    self.gradientNorm = gradientNorm
    self.tokensPerSecond = tokensPerSecond
    self.secondsRemaining = secondsRemaining
    self.validationLoss = validationLoss
  }

  /// One line, e.g. `stage 2 step 120/1000 loss 0.4213 lr 2.00e-04 812 tok/s ETA 1h02m`,
  /// with ` val 0.4410` appended when validation ran.
  public var description: String {
    var line = TrainingProgress(
      stage: "\(stage.rawValue)", step: step, totalSteps: totalSteps, loss: loss, learningRate: learningRate,
      tokensPerSecond: tokensPerSecond, secondsRemaining: secondsRemaining
    ).description
    if let validationLoss { line += String(format: " val %.4f", Double(validationLoss)) }
    return line
  }
}

/// The progress callback's decision after each step.
public enum DistillationControl: Sendable {
  case proceed
  /// Write a checkpoint and return from `run` (resume later with `resume()`).
  case stop
}

/// One line of `metrics.jsonl`.
public struct DistillationMetricsRecord: Codable, Sendable, Equatable {
  public var stage: Int
  public var step: Int
  public var loss: Float
  public var lr: Float
  public var gradNorm: Float
  /// Training tokens consumed over the whole run after this step.
  public var tokens: Int
  /// Training seconds over the whole run after this step.
  public var seconds: Double
  public var valLoss: Float?

  public init(
    stage: Int, step: Int, loss: Float, lr: Float, gradNorm: Float, tokens: Int, seconds: Double, valLoss: Float? = nil
  ) {
    self.stage = stage
    self.step = step
    self.loss = loss
    self.lr = lr
    self.gradNorm = gradNorm
    self.tokens = tokens
    self.seconds = seconds
    self.valLoss = valLoss
  }

  enum CodingKeys: String, CodingKey {
    case stage, step, loss, lr, tokens, seconds
    case gradNorm = "grad_norm"
    case valLoss = "val_loss"
  }

  /// Reads every record of a metrics file; a line that does not decode is an error naming it.
  public static func load(from url: URL) throws -> [DistillationMetricsRecord] {
    let text: String
    do {
      text = try String(contentsOf: url, encoding: .utf8)
    } catch {
      throw TrainingError.fileOperationFailed(path: url.path, operation: "read", reason: error.localizedDescription)
    }
    let decoder = JSONDecoder()
    decoder.nonConformingFloatDecodingStrategy = .convertFromString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    var records: [DistillationMetricsRecord] = []
    for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      if line.allSatisfy({ $0 == " " || $0 == "\r" }) { continue }
      do {
        records.append(try decoder.decode(DistillationMetricsRecord.self, from: Data(line.utf8)))
      } catch {
        throw TrainingError.malformedJSONLine(
          path: url.path, line: index + 1, reason: "not a metrics record (\(error))")
      }
    }
    return records
  }
}

/// The end state of a call to `Distiller.run`.
public struct DistillationOutcome: Sendable, Equatable {
  /// True when every stage ran to its end.
  public var finished: Bool
  /// Stage and step of the last update taken (step 0 when none was taken).
  public var stage: MOHAWKStage
  public var step: Int
  /// The last checkpoint written, if any.
  public var lastCheckpoint: URL?
}

/// Objectives that can measure a loss without gradients, used for validation when available.
public protocol ValidationLossMeasuring: AnyObject {
  func loss(batch: TokenBatch, parameters: ParameterStore) throws -> Float
}

/// Runs the MOHAWK stages of a `DistillationConfiguration` over token shards.
///
/// Each stage freezes its patterns (all else is trainable) and builds its objective with the
/// factory and a fresh AdamW. Each of its `steps` updates then:
/// 1. zeroes the gradients and adds the objective's over `accumulationSteps` micro-batches;
/// 2. averages loss and gradients over the micro-batches, and throws
///    `TrainingError.nonFiniteLoss` when either is not finite, so the last checkpoint stays
///    the latest;
/// 3. clips, and takes the AdamW step at the schedule's learning rate for this step;
/// 4. logs a metrics line, measures validation at the interval, and checkpoints at the
///    interval, at the stage's end and when the callback returns `.stop`.
/// Objectives must not keep state between calls, so a run resumed from a checkpoint repeats
/// an uninterrupted one's losses bit for bit.
public final class Distiller {
  public private(set) var configuration: DistillationConfiguration
  public let parameters: ParameterStore
  public let outputDirectory: URL
  public let checkpoints: CheckpointStore
  public var studentFormat: StudentFolderFormat?
  private let trainShards: [TokenShardReader]
  private let validationShards: [TokenShardReader]
  /// Why validation is off although validation shards were given, or nil.
  public private(set) var validationNote: String?
  private let objectiveFactory: (MOHAWKStage) throws -> TrainingObjective

  /// Index into `configuration.stages` of the stage the next `run` starts in.
  public private(set) var stageIndex = 0
  public private(set) var step = 0
  private var batcherPosition = BatcherPosition()
  private var tokensSeen = 0
  private var elapsedSeconds: Double = 0
  private var pendingOptimizerState: [String: Tensor]?
  private var lastCheckpoint: URL?

  public static let metricsFileName = "metrics.jsonl"
  public static let plotFileName = "loss.svg"

  /// - Parameters:
  ///   - parameters: the student's weights; trained in place.
  ///   - trainShards, validationShards: token shards (validation may be empty: no validation).
  ///   - outputDirectory: receives `metrics.jsonl`, `loss.svg`, `latest.json` and `checkpoints/`.
  ///   - studentFormat: when given, checkpoints hold a loadable Hugging Face student folder;
  ///     otherwise only `model.safetensors`.
  ///   - objectiveFactory: builds each stage's objective.
  public init(
    configuration: DistillationConfiguration, parameters: ParameterStore, trainShards: [TokenShardReader],
    validationShards: [TokenShardReader] = [], outputDirectory: URL, studentFormat: StudentFolderFormat? = nil,
    objectiveFactory: @escaping (MOHAWKStage) throws -> TrainingObjective
  ) throws {
    try configuration.validate()
    self.configuration = configuration
    self.parameters = parameters
    self.trainShards = trainShards
    var usableValidation = validationShards
    if !validationShards.isEmpty {
      do {
        _ = try Batcher(
          shards: validationShards, contextLength: configuration.contextLength, batchSize: 1, seed: 0)
      } catch let error as TrainingError {
        validationNote = "validation is off because the validation shards are too short: \(error)"
        usableValidation = []
      }
    }
    self.validationShards = usableValidation
    self.outputDirectory = outputDirectory
    self.studentFormat = studentFormat
    self.objectiveFactory = objectiveFactory
    checkpoints = CheckpointStore(outputDirectory: outputDirectory)
    do {
      try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
    } catch {
      throw TrainingError.fileOperationFailed(
        path: outputDirectory.path, operation: "create the output folder", reason: error.localizedDescription)
    }
  }

  public var metricsURL: URL { outputDirectory.appendingPathComponent(Self.metricsFileName) }

  /// Loads the latest checkpoint of the output folder: weights into `parameters`, optimizer
  /// state, position, and the configuration saved with the run (which replaces the one given
  /// to `init`). Cuts `metrics.jsonl` back to its length at that checkpoint. Returns the
  /// checkpoint's state, or nil when the folder has none (the run then starts fresh).
  @discardableResult
  public func resume() throws -> TrainingState? {
    guard let folder = try checkpoints.latestCheckpoint() else { return nil }
    let (state, optimizerTensors) = try checkpoints.read(folder, into: parameters)
    try state.configuration.validate()
    guard state.stageIndex >= 0, state.stageIndex < state.configuration.stages.count,
      (0...state.configuration.stages[state.stageIndex].steps).contains(state.step)
    else {
      throw TrainingError.invalidConfiguration(
        name: "checkpoint position", value: "stage index \(state.stageIndex), step \(state.step)",
        expected: "a stage and step inside the saved configuration (\(folder.path))")
    }
    configuration = state.configuration
    stageIndex = state.stageIndex
    step = state.step
    batcherPosition = state.batcherPosition
    tokensSeen = state.tokensSeen
    elapsedSeconds = state.elapsedSeconds
    pendingOptimizerState = optimizerTensors
    lastCheckpoint = folder
    try truncateMetrics(to: state.metricsBytes)
    return state
  }

  private func truncateMetrics(to length: UInt64) throws {
    let url = metricsURL
    guard FileManager.default.fileExists(atPath: url.path) else { return }
    do {
      let handle = try FileHandle(forWritingTo: url)
      defer { try? handle.close() }
      if try handle.seekToEnd() > length { try handle.truncate(atOffset: length) }
    } catch {
      throw TrainingError.fileOperationFailed(
        path: url.path, operation: "cut back to \(length) bytes", reason: error.localizedDescription)
    }
  }

  /// Runs from the current position to the end of the last stage, or until the callback
  /// returns `.stop`. Throws `TrainingError.nonFiniteLoss` on a NaN or infinite loss.
  @discardableResult
  public func run(
    progress: (DistillationProgress) -> DistillationControl = { _ in .proceed }
  ) throws -> DistillationOutcome {
    let logger = try MetricsLogger(url: metricsURL)
    let batcher = try Batcher(
      shards: trainShards, contextLength: configuration.contextLength, batchSize: configuration.batchSize,
      seed: configuration.seed, position: batcherPosition)
    var lastStage = configuration.stages[min(stageIndex, configuration.stages.count - 1)].stage

    while stageIndex < configuration.stages.count {
      let settings = configuration.stages[stageIndex]
      lastStage = settings.stage
      if step >= settings.steps {
        stageIndex += 1
        step = 0
        pendingOptimizerState = nil
        continue
      }
      parameters.unfreezeAll()
      parameters.freeze(matching: settings.freezePatterns)
      let optimizer = AdamW(
        beta1: configuration.beta1, beta2: configuration.beta2, weightDecay: configuration.weightDecay)
      if let saved = pendingOptimizerState {
        try optimizer.load(stateTensors: saved, validatingAgainst: parameters)
        pendingOptimizerState = nil
      }
      let objective = try objectiveFactory(settings.stage)
      let stageStart = Date()
      let stepAtStart = step

      while step < settings.steps {
        let stepStart = Date()
        let loss = try trainingStep(objective: objective, batcher: batcher)
        let norm = configuration.clipNorm > 0
          ? parameters.clipGradients(maxNorm: configuration.clipNorm) : parameters.globalGradientNorm()
        guard norm.isFinite else {
          throw TrainingError.nonFiniteLoss(stage: settings.stage.label + " (gradient norm)", step: step + 1, value: norm)
        }
        let learningRate = settings.schedule.learningRate(step: step, totalSteps: settings.steps, peak: settings.learningRate)
        optimizer.update(parameters, learningRate: learningRate)
        step += 1
        tokensSeen += configuration.tokensPerStep
        elapsedSeconds += Date().timeIntervalSince(stepStart)
        batcherPosition = batcher.position

        let stageEnd = step == settings.steps
        var validationLoss: Float?
        if configuration.validationInterval > 0, !validationShards.isEmpty,
          step % configuration.validationInterval == 0 || stageEnd
        {
          validationLoss = try measureValidation(objective: objective)
        }
        try logger.append(
          DistillationMetricsRecord(
            stage: settings.stage.rawValue, step: step, loss: loss, lr: learningRate, gradNorm: norm,
            tokens: tokensSeen, seconds: elapsedSeconds, valLoss: validationLoss))

        let seconds = Date().timeIntervalSince(stageStart)
        let stepsDone = step - stepAtStart
        let report = DistillationProgress(
          stage: settings.stage, step: step, totalSteps: settings.steps, loss: loss, learningRate: learningRate,
          gradientNorm: norm,
          tokensPerSecond: seconds > 0 ? Double(stepsDone * configuration.tokensPerStep) / seconds : 0,
          secondsRemaining: seconds / Double(stepsDone) * Double(settings.steps - step),
          validationLoss: validationLoss)
        let control = progress(report)
        let interval = configuration.checkpointInterval
        if stageEnd || control == .stop || (interval > 0 && step % interval == 0) {
          try checkpoint(stage: settings.stage, optimizer: optimizer, final: stageEnd)
        }
        if control == .stop {
          return DistillationOutcome(finished: false, stage: settings.stage, step: step, lastCheckpoint: lastCheckpoint)
        }
      }
      stageIndex += 1
      step = 0
    }
    return DistillationOutcome(
      finished: true, stage: lastStage, step: configuration.stages.last!.steps, lastCheckpoint: lastCheckpoint)
  }

  /// Zeroes the gradients, accumulates the micro-batches and returns the mean loss, with the
  /// gradients averaged to match. Throws on a non-finite loss before any weight changes.
  private func trainingStep(objective: TrainingObjective, batcher: Batcher) throws -> Float {
    parameters.zeroGradients()
    let micro = configuration.accumulationSteps
    var total: Float = 0
    for _ in 0..<micro {
      total += try objective.lossAndGradients(batch: batcher.nextBatch(), parameters: parameters)
    }
    let loss = total / Float(micro)
    try checkFinite(loss: loss, stage: configuration.stages[stageIndex].stage.label, step: step + 1)
    if micro > 1 { parameters.scaleGradients(by: 1 / Float(micro)) }
    return loss
  }

  /// Mean loss over the first `validationBatches` batches of the validation shards, in a
  /// fixed order (seed derived from the run's), so successive measurements are comparable.
  private func measureValidation(objective: TrainingObjective) throws -> Float {
    let batcher = try Batcher(
      shards: validationShards, contextLength: configuration.contextLength, batchSize: configuration.batchSize,
      seed: SplitMix64.mix(configuration.seed ^ 0x5641_4C49_4441_5445))
    var total: Float = 0
    for _ in 0..<configuration.validationBatches {
      let batch = batcher.nextBatch()
      if let measuring = objective as? ValidationLossMeasuring {
        total += try measuring.loss(batch: batch, parameters: parameters)
      } else {
        total += try objective.lossAndGradients(batch: batch, parameters: parameters)
      }
    }
    parameters.zeroGradients()
    return total / Float(configuration.validationBatches)
  }

  private func checkpoint(stage: MOHAWKStage, optimizer: Optimizer, final: Bool) throws {
    let metricsBytes = (try? FileManager.default.attributesOfItem(atPath: metricsURL.path)[.size] as? NSNumber)?
      .uint64Value ?? 0
    let state = TrainingState(
      configuration: configuration, stageIndex: stageIndex, step: step, batcherPosition: batcherPosition,
      tokensSeen: tokensSeen, elapsedSeconds: elapsedSeconds, metricsBytes: metricsBytes)
    lastCheckpoint = try checkpoints.write(
      name: CheckpointStore.checkpointName(stage: stage, step: step, final: final), parameters: parameters,
      optimizer: optimizer, state: state, studentFormat: studentFormat)
    // The plot is a convenience; failing to draw it must not stop training.
    if let records = try? DistillationMetricsRecord.load(from: metricsURL) {
      try? AtomicFile.write(Data(LossPlot.svg(records: records).utf8), to: outputDirectory.appendingPathComponent(Self.plotFileName))
    }
  }
}
