import Foundation
import Testing
import XLTensors
@testable import XLTraining

/// A deterministic stand-in for a MOHAWK objective: a quadratic pulling each parameter
/// element toward a target read from the batch,
/// `loss = ½ Σ_names Σ_i (p_i − t_i)²` with `t_i = stage · (inputs[i mod n] mod 7) / 7`,
/// so the loss depends on the weights and on which batch came.
final class QuadraticObjective: TrainingObjective {
  let stage: MOHAWKStage
  /// Called before each batch with the number of calls so far; may throw or request NaN.
  var onCall: ((Int) throws -> Bool)?
  private(set) var calls = 0
  /// The frozen set the store had at each call.
  private(set) var frozenSeen: [Set<String>] = []

  init(stage: MOHAWKStage, onCall: ((Int) throws -> Bool)? = nil) {
    self.stage = stage
    self.onCall = onCall
  }

  func lossAndGradients(batch: TokenBatch, parameters: ParameterStore) throws -> Float {
    calls += 1
    frozenSeen.append(parameters.frozen)
    let poison = try onCall?(calls) ?? false
    var loss: Float = 0
    let scale = Float(stage.rawValue)
    for name in parameters.names {
      parameters.withValueAndGradient(name) { value, gradient in
        for i in value.indices {
          let target = scale * Float(batch.inputs[i % batch.inputs.count] % 7) / 7
          let difference = value[i] - target
          loss += 0.5 * difference * difference
          gradient[i] += difference
        }
      }
    }
    return poison ? .nan : loss
  }
}

struct SimulatedCrash: Error {}

/// Fresh toy weights, identical on every call.
func toyParameters() -> ParameterStore {
  ParameterStore([
    "model.layers.0.self_attn.q.weight": Tensor(shape: [2, 3], data: [0.1, -0.2, 0.3, 0.4, -0.5, 0.6]),
    "model.layers.0.mlp.up_proj.weight": Tensor(shape: [4], data: [1, 2, 3, 4]),
  ])
}

func toyShards(in folder: URL) throws -> (train: [TokenShardReader], validation: [TokenShardReader]) {
  let train = try makeShard((0..<400).map { ($0 * 37 + 11) % 50 }, vocabSize: 50, in: folder, name: "train-00000.bin")
  let validation = try makeShard((0..<60).map { ($0 * 13 + 5) % 50 }, vocabSize: 50, in: folder, name: "validation-00000.bin")
  return ([train], [validation])
}

func toyConfiguration(checkpointInterval: Int = 3) -> DistillationConfiguration {
  var configuration = DistillationConfiguration(stages: [
    StageSettings(stage: .matrixOrientation, steps: 7, learningRate: 0.05, schedule: .warmupStableDecay(warmup: 2, decayFraction: 0.3), freezePatterns: ["mlp"]),
    StageSettings(stage: .endToEnd, steps: 6, learningRate: 0.03, schedule: .linear(warmup: 1), freezePatterns: []),
  ])
  configuration.batchSize = 2
  configuration.contextLength = 8
  configuration.accumulationSteps = 2
  configuration.checkpointInterval = checkpointInterval
  configuration.validationInterval = 4
  configuration.validationBatches = 2
  configuration.seed = 42
  return configuration
}

/// Losses and final weights of a run, losses as bit patterns.
struct RunRecord: Equatable {
  var losses: [UInt32] = []
  var weights: [String: [UInt32]] = [:]
}

@Suite("Distiller")
struct DistillerTests {
  func makeDistiller(
    folder: URL, output: URL, configuration: DistillationConfiguration = toyConfiguration(),
    onCall: ((MOHAWKStage, Int) throws -> Bool)? = nil
  ) throws -> Distiller {
    let shards = try toyShards(in: folder)
    return try Distiller(
      configuration: configuration, parameters: toyParameters(), trainShards: shards.train,
      validationShards: shards.validation, outputDirectory: output
    ) { stage in
      QuadraticObjective(stage: stage, onCall: onCall.map { hook in { try hook(stage, $0) } })
    }
  }

  func weights(_ store: ParameterStore) -> [String: [UInt32]] {
    store.tensors.mapValues { $0.data.map(\.bitPattern) }
  }

  @Test("budget split into steps")
  func budgetSplit() throws {
    let steps = try DistillationConfiguration.stepsForBudget(
      tokens: 2_000_000, split: [0.05, 0.15, 0.80], tokensPerStep: 512)
    #expect(steps == [195, 585, 3125])  // floor(100000/512), floor(300000/512), 1600000/512
    var base = DistillationConfiguration(stages: [])
    base.batchSize = 2
    base.contextLength = 256
    base.accumulationSteps = 2
    let configuration = try DistillationConfiguration.budgeted(tokens: 1_000_000, split: [0, 0.25, 0.75], base: base)
    #expect(configuration.stages.map(\.stage) == [.hiddenStateAlignment, .endToEnd])
    #expect(configuration.stages.map(\.steps) == [244, 732])  // 250000/1024, 750000/1024
    #expect(configuration.stages.map(\.learningRate) == [2e-4, 4e-4])
    #expect(configuration.stages[1].schedule == .linear(warmup: 73))
    #expect(throws: TrainingError.self) {
      try DistillationConfiguration.stepsForBudget(tokens: 1000, split: [0.5, 0.6, 0.1], tokensPerStep: 10)
    }
    #expect(throws: TrainingError.self) {
      try DistillationConfiguration.stepsForBudget(tokens: 1000, split: [0.5, 0.5], tokensPerStep: 10)
    }
  }

  @Test("learning rate per step follows the schedule")
  func learningRates() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let configuration = toyConfiguration()
    let distiller = try makeDistiller(folder: folder, output: folder.appendingPathComponent("run"), configuration: configuration)
    var seen: [(MOHAWKStage, Int, Float)] = []
    let outcome = try distiller.run { progress in
      seen.append((progress.stage, progress.step, progress.learningRate))
      return .proceed
    }
    #expect(outcome.finished)
    var expected: [(MOHAWKStage, Int, Float)] = []
    for settings in configuration.stages {
      for step in 0..<settings.steps {
        expected.append((settings.stage, step + 1, settings.schedule.learningRate(step: step, totalSteps: settings.steps, peak: settings.learningRate)))
      }
    }
    #expect(seen.map(\.0) == expected.map(\.0))
    #expect(seen.map(\.1) == expected.map(\.1))
    #expect(seen.map(\.2) == expected.map(\.2))
    let records = try DistillationMetricsRecord.load(from: distiller.metricsURL)
    #expect(records.map(\.lr) == expected.map(\.2))
    #expect(records.map(\.stage) == expected.map(\.0.rawValue))
    #expect(records.last?.tokens == 13 * configuration.tokensPerStep)
    // Validation every 4 steps and at each stage's end.
    #expect(records.filter { $0.valLoss != nil }.map { "\($0.stage).\($0.step)" } == ["1.4", "1.7", "3.4", "3.6"])
  }

  @Test("freezing applies per stage")
  func freezing() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    var objectives: [QuadraticObjective] = []
    let shards = try toyShards(in: folder)
    let parameters = toyParameters()
    let mlp = "model.layers.0.mlp.up_proj.weight", q = "model.layers.0.self_attn.q.weight"
    var configuration = toyConfiguration()
    configuration.stages[0].steps = 3
    let distiller = try Distiller(
      configuration: configuration, parameters: parameters, trainShards: shards.train,
      outputDirectory: folder.appendingPathComponent("run")
    ) { stage in
      let objective = QuadraticObjective(stage: stage)
      objectives.append(objective)
      return objective
    }
    let mlpBefore = parameters.value(mlp)!.data, qBefore = parameters.value(q)!.data
    var mlpAfterStage1: [Float] = [], qAfterStage1: [Float] = []
    try distiller.run { progress in
      if progress.stage == .matrixOrientation && progress.step == 3 {
        mlpAfterStage1 = parameters.value(mlp)!.data
        qAfterStage1 = parameters.value(q)!.data
      }
      return .proceed
    }
    #expect(objectives.count == 2)
    #expect(objectives[0].frozenSeen.allSatisfy { $0 == [mlp] })
    #expect(objectives[1].frozenSeen.allSatisfy { $0.isEmpty })
    #expect(mlpAfterStage1 == mlpBefore)  // frozen: no gradient step and no weight decay
    #expect(qAfterStage1 != qBefore)
    #expect(parameters.value(mlp)!.data != mlpBefore)  // trained in stage 3
  }

  @Test("resume after a kill repeats the uninterrupted losses bit for bit")
  func resumeEquality() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }

    // Uninterrupted.
    var straight = RunRecord()
    let reference = try makeDistiller(folder: folder, output: folder.appendingPathComponent("straight"))
    try reference.run { straight.losses.append($0.loss.bitPattern); return .proceed }
    straight.weights = weights(reference.parameters)
    #expect(straight.losses.count == 13)

    // Crash at the 9th objective call of stage 1 (the step-4 validation, after the step-3
    // checkpoint), then likewise in stage 3. Each time all memory is thrown away.
    let output = folder.appendingPathComponent("crashing")
    var resumed = RunRecord()
    let crashAtCall: [MOHAWKStage: Int] = [.matrixOrientation: 9, .endToEnd: 9]  // 2 calls per step, 2 per validation
    var crashes = 0
    for attempt in 0..<3 {
      let distiller = try makeDistiller(folder: folder, output: output) { stage, call in
        if attempt < 2, crashAtCall[stage] == call, (stage == .matrixOrientation) == (attempt == 0) {
          throw SimulatedCrash()
        }
        return false
      }
      let state = try distiller.resume()
      if attempt > 0 {
        let state = try #require(state)
        #expect(state.step == 3)
        // Keep the losses up to the checkpoint, drop the ones the crash lost.
        let kept = try DistillationMetricsRecord.load(from: distiller.metricsURL).count
        resumed.losses = Array(resumed.losses.prefix(kept))
      }
      do {
        try distiller.run { resumed.losses.append($0.loss.bitPattern); return .proceed }
        resumed.weights = weights(distiller.parameters)
      } catch is SimulatedCrash {
        crashes += 1
      }
    }
    #expect(crashes == 2)
    #expect(resumed == straight)
    let straightLog = try DistillationMetricsRecord.load(from: reference.metricsURL)
    let resumedLog = try DistillationMetricsRecord.load(from: output.appendingPathComponent("metrics.jsonl"))
    #expect(resumedLog.map(\.loss.bitPattern) == straightLog.map(\.loss.bitPattern))
    #expect(resumedLog.map(\.step) == straightLog.map(\.step))
    #expect(resumedLog.map(\.tokens) == straightLog.map(\.tokens))
    #expect(resumedLog.map { $0.valLoss?.bitPattern } == straightLog.map { $0.valLoss?.bitPattern })
  }

  @Test("stop from the callback checkpoints and resumes")
  func stopAndResume() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    var straight: [UInt32] = []
    try makeDistiller(folder: folder, output: folder.appendingPathComponent("a"), configuration: toyConfiguration(checkpointInterval: 0))
      .run { straight.append($0.loss.bitPattern); return .proceed }

    var losses: [UInt32] = []
    let output = folder.appendingPathComponent("b")
    let first = try makeDistiller(folder: folder, output: output, configuration: toyConfiguration(checkpointInterval: 0))
    let outcome = try first.run { progress in
      losses.append(progress.loss.bitPattern)
      return progress.stage == .endToEnd && progress.step == 2 ? .stop : .proceed
    }
    #expect(!outcome.finished)
    #expect(outcome.lastCheckpoint?.lastPathComponent == "stage3-step000002")
    let second = try makeDistiller(folder: folder, output: output, configuration: toyConfiguration(checkpointInterval: 0))
    let state = try #require(try second.resume())
    #expect(state.stageIndex == 1)
    #expect(state.step == 2)
    let end = try second.run { losses.append($0.loss.bitPattern); return .proceed }
    #expect(end.finished)
    #expect(losses == straight)
    // Stage-end checkpoints stay; mid-stage ones are pruned.
    let names = try FileManager.default.contentsOfDirectory(atPath: output.appendingPathComponent("checkpoints").path).sorted()
    #expect(names == ["stage1-final", "stage3-final"])
  }

  @Test("NaN loss stops with stage and step and keeps the last checkpoint")
  func nanStops() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let output = folder.appendingPathComponent("run")
    var configuration = toyConfiguration(checkpointInterval: 2)
    configuration.accumulationSteps = 1
    configuration.validationInterval = 0
    let distiller = try makeDistiller(folder: folder, output: output, configuration: configuration) { stage, call in
      stage == .matrixOrientation && call == 5
    }
    var before: [String: [UInt32]] = [:]
    var error: TrainingError?
    do {
      try distiller.run { progress in
        if progress.step == 4 { before = weights(distiller.parameters) }
        return .proceed
      }
    } catch let caught as TrainingError {
      error = caught
    }
    let caught = try #require(error)
    guard case .nonFiniteLoss(let stage, let step, let value) = caught else {
      Issue.record("expected nonFiniteLoss, got \(caught)")
      return
    }
    #expect(stage == "1 matrix orientation")
    #expect(step == 5)
    #expect(value.isNaN)
    #expect(caught.description.contains("stage 1 matrix orientation, step 5"))

    let latest = try #require(try CheckpointStore(outputDirectory: output).latestCheckpoint())
    #expect(latest.lastPathComponent == "stage1-step000004")
    let reloaded = toyParameters()
    let (state, _) = try CheckpointStore(outputDirectory: output).read(latest, into: reloaded)
    #expect(state.step == 4)
    #expect(weights(reloaded) == before)
    #expect(try DistillationMetricsRecord.load(from: distiller.metricsURL).count == 4)
    let leftovers = try FileManager.default.contentsOfDirectory(atPath: output.appendingPathComponent("checkpoints").path)
    #expect(leftovers == ["stage1-step000004"])
  }

  @Test("too short validation shards turn validation off")
  func shortValidation() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let shards = try toyShards(in: folder)
    let short = try makeShard([1, 2, 3, 4, 5], vocabSize: 50, in: folder, name: "validation-short.bin")
    let distiller = try Distiller(
      configuration: toyConfiguration(), parameters: toyParameters(), trainShards: shards.train,
      validationShards: [short], outputDirectory: folder.appendingPathComponent("run")
    ) { QuadraticObjective(stage: $0) }
    #expect(distiller.validationNote?.contains("too short") == true)
    let outcome = try distiller.run()
    #expect(outcome.finished)
    let records = try DistillationMetricsRecord.load(from: distiller.metricsURL)
    #expect(records.count == 13)
    #expect(records.allSatisfy { $0.valLoss == nil })
  }

  @Test("invalid configuration is rejected")
  func invalidConfiguration() throws {
    var configuration = toyConfiguration()
    configuration.stages[1].stage = .matrixOrientation
    #expect(throws: TrainingError.self) { try configuration.validate() }
    configuration = toyConfiguration()
    configuration.stages[0].steps = 0
    #expect(throws: TrainingError.self) { try configuration.validate() }
    #expect(throws: TrainingError.self) { try DistillationConfiguration(stages: []).validate() }
  }
}
