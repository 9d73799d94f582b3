import Foundation
import XLTensors

extension MOHAWKStage {
  /// Short English name, e.g. "matrix orientation".
  public var title: String {
    switch self {
    case .matrixOrientation: return "matrix orientation"
    case .hiddenStateAlignment: return "hidden-state alignment"
    case .endToEnd: return "end-to-end"
    }
  }

  /// The stage as messages and `checkFinite` name it, e.g. "1 matrix orientation".
  public var label: String { "\(rawValue) \(title)" }
}

/// The settings of one stage of a distillation run.
public struct StageSettings: Codable, Sendable, Equatable {
  public var stage: MOHAWKStage
  /// Optimizer updates in this stage.
  public var steps: Int
  /// Peak learning rate of the schedule.
  public var learningRate: Float
  public var schedule: LearningRateSchedule
  /// Parameters frozen during this stage (`ParameterStore.freeze(matching:)` rules: a pattern
  /// with `*` or `?` is a glob over the whole name, any other a substring).
  public var freezePatterns: [String]

  public init(
    stage: MOHAWKStage, steps: Int, learningRate: Float? = nil, schedule: LearningRateSchedule? = nil,
    freezePatterns: [String]? = nil
  ) {
    self.stage = stage
    self.steps = steps
    self.learningRate = learningRate ?? DistillationConfiguration.defaultLearningRate(stage)
    self.schedule = schedule ?? DistillationConfiguration.defaultSchedule(stage, steps: steps)
    self.freezePatterns = freezePatterns ?? DistillationConfiguration.defaultFreezePatterns(stage)
  }
}

/// A distillation run as a plain value: which stages, how long, and how each step is taken.
///
/// One step draws `accumulationSteps` micro-batches of `batchSize` rows of `contextLength`
/// tokens, so it consumes `tokensPerStep = accumulationSteps · batchSize · contextLength`
/// training tokens. Each stage starts a fresh AdamW (β `beta1`/`beta2`, decoupled weight decay
/// `weightDecay`) and clips the global gradient norm at `clipNorm`.
public struct DistillationConfiguration: Codable, Sendable, Equatable {
  /// Stages in the order they run, each at most once (`validate()` checks this).
  public var stages: [StageSettings]
  public var batchSize = 1
  public var contextLength = 512
  public var accumulationSteps = 1
  /// Global gradient-norm limit; 0 or less turns clipping off.
  public var clipNorm: Float = 1
  public var weightDecay: Float = 0.1
  public var beta1: Float = 0.9
  public var beta2: Float = 0.95
  /// A checkpoint every this many steps within a stage (0: only at stage ends and on stop).
  public var checkpointInterval = 0
  /// Validation loss every this many steps and at each stage's end (0: never).
  public var validationInterval = 0
  /// Batches of `batchSize` rows averaged for one validation loss.
  public var validationBatches = 4
  /// Seed of the training batch order (the validation order uses a derived seed).
  public var seed: UInt64 = 0
  /// The arithmetic of the matrix products of training and of the teacher's forward pass (see
  /// `ProductPrecision`). Nil, as in runs saved before the setting existed, means float32. The
  /// command line applies it through `BLAS.productPrecision`.
  public var productPrecision: ProductPrecision?

  public init(stages: [StageSettings]) { self.stages = stages }

  public var tokensPerStep: Int { accumulationSteps * batchSize * contextLength }

  // MARK: Recipe defaults

  /// Returns the xLlama recipe's peak learning rate: 2.5e-4, 2e-4 and 4e-4 for stages 1, 2, 3.
  public static func defaultLearningRate(_ stage: MOHAWKStage) -> Float {
    switch stage {
    case .matrixOrientation: return 2.5e-4
    case .hiddenStateAlignment: return 2e-4
    case .endToEnd: return 4e-4
    }
  }

  /// Returns warmup-stable-decay for stages 1 and 2 (decay over the last 20 % of steps), linear decay
  /// for stage 3; every schedule warms up over the first 10 % of steps (at least one).
  public static func defaultSchedule(_ stage: MOHAWKStage, steps: Int) -> LearningRateSchedule {
    let warmup = max(1, Int((0.1 * Double(steps)).rounded()))
    switch stage {
    case .matrixOrientation, .hiddenStateAlignment:
      return .warmupStableDecay(warmup: warmup, decayFraction: 0.2)
    case .endToEnd:
      return .linear(warmup: warmup)
    }
  }

  /// Returns the parameters each stage freezes by default. Stage 1's loss reads only the mixing
  /// matrix, so everything but q, k, the gates and the input norm is frozen: AdamW's weight
  /// decay would otherwise shrink weights that get no gradient. Stage 2 keeps the teacher's MLP
  /// fixed, so the mixer alone learns to reproduce each layer, and freezes the embedding, final
  /// norm and output projection, which its loss never reaches. Stage 3 trains everything.
  public static func defaultFreezePatterns(_ stage: MOHAWKStage) -> [String] {
    let outsideMixer = ["embed_tokens", "lm_head", "model.norm.", "mlp.", "post_attention_layernorm"]
    switch stage {
    case .matrixOrientation:
      return outsideMixer + ["self_attn.v.", "ogate_preact", "multihead_norm", "out_proj"]
    case .hiddenStateAlignment:
      return ["embed_tokens", "lm_head", "model.norm.", "mlp."]
    case .endToEnd:
      return []
    }
  }

  // MARK: Building runs

  /// Splits a token budget between stages 1, 2 and 3 by `split` (three non-negative shares
  /// summing to 1 within 1e-6) and returns the steps of each:
  /// `floor(tokens · share / tokensPerStep)`, at least 1 for a positive share. A stage with a
  /// zero share gets 0 steps.
  public static func stepsForBudget(tokens: Int, split: [Double], tokensPerStep: Int) throws -> [Int] {
    guard tokens > 0 else {
      throw TrainingError.invalidConfiguration(name: "token budget", value: "\(tokens)", expected: "at least 1")
    }
    guard tokensPerStep > 0 else {
      throw TrainingError.invalidConfiguration(
        name: "tokens per step", value: "\(tokensPerStep)", expected: "at least 1")
    }
    let total = split.reduce(0, +)
    guard split.count == 3, split.allSatisfy({ $0 >= 0 && $0.isFinite }), abs(total - 1) <= 1e-6 else {
      throw TrainingError.invalidConfiguration(
        name: "stage split", value: split.map { "\($0)" }.joined(separator: ","),
        expected: "three non-negative shares for stages 1, 2, 3 summing to 1, e.g. 0.05,0.15,0.80")
    }
    return split.map { share in
      guard share > 0 else { return 0 }
      let stageTokens = Double(tokens) * share
      return max(1, Int((stageTokens / Double(tokensPerStep)).rounded(.down)))
    }
  }

  /// Builds a run of all three stages sharing `tokens` by `split`, with the recipe's defaults.
  /// Stages whose share is zero are left out. Change batch size, context length and
  /// accumulation on `base` first: they decide the steps.
  public static func budgeted(
    tokens: Int, split: [Double] = [0.05, 0.15, 0.80], base: DistillationConfiguration = .init(stages: [])
  ) throws -> DistillationConfiguration {
    let steps = try stepsForBudget(tokens: tokens, split: split, tokensPerStep: base.tokensPerStep)
    var configuration = base
    configuration.stages = zip(MOHAWKStage.allCases, steps)
      .filter { $0.1 > 0 }
      .map { StageSettings(stage: $0.0, steps: $0.1) }
    return configuration
  }

  /// Checks every value; throws `TrainingError.invalidConfiguration` naming the first bad one.
  public func validate() throws {
    func check(_ ok: Bool, _ name: String, _ value: String, _ expected: String) throws {
      if !ok { throw TrainingError.invalidConfiguration(name: name, value: value, expected: expected) }
    }
    try check(!stages.isEmpty, "stage list", "empty", "at least one stage")
    let numbers = stages.map(\.stage.rawValue)
    try check(Set(numbers).count == numbers.count, "stage list", "\(numbers)", "each stage at most once")
    for settings in stages {
      let name = "stage \(settings.stage.rawValue)"
      try check(settings.steps > 0, "\(name) steps", "\(settings.steps)", "at least 1")
      try check(
        settings.learningRate.isFinite && settings.learningRate > 0, "\(name) learning rate",
        "\(settings.learningRate)", "a positive number")
      try check(settings.schedule.warmup >= 0, "\(name) warmup", "\(settings.schedule.warmup)", "0 or more steps")
    }
    try check(batchSize > 0, "batch size", "\(batchSize)", "at least 1")
    try check(contextLength > 0, "context length", "\(contextLength)", "at least 1")
    try check(accumulationSteps > 0, "gradient accumulation", "\(accumulationSteps)", "at least 1")
    try check(clipNorm.isFinite, "clip norm", "\(clipNorm)", "a finite number")
    try check(weightDecay >= 0 && weightDecay.isFinite, "weight decay", "\(weightDecay)", "0 or more")
    try check((0..<1).contains(beta1), "beta1", "\(beta1)", "a number in [0, 1)")
    try check((0..<1).contains(beta2), "beta2", "\(beta2)", "a number in [0, 1)")
    try check(checkpointInterval >= 0, "checkpoint interval", "\(checkpointInterval)", "0 or more steps")
    try check(validationInterval >= 0, "validation interval", "\(validationInterval)", "0 or more steps")
    try check(validationBatches > 0, "validation batches", "\(validationBatches)", "at least 1")
  }
}
