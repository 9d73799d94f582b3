import Foundation
import XLlama

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Set by the SIGINT handler, so the progress callback returns `.stop` after the current step.
nonisolated(unsafe) private var interruptRequested: sig_atomic_t = 0

enum DistillCommand: Command {
  static let name = "distill"
  static let summary = "Distill a Llama teacher into an xLlama student with the MOHAWK stages (resumable)."
  static let usage = "--teacher M --student DIR --data DIR --out DIR [--tokens N --split A,B,C | --stage K --steps N] [options]"
  static let options: [OptionSpec] = [
    OptionSpec(name: "--teacher", valueName: "PATH", help: "the Llama teacher (.gguf or Hugging Face folder)"),
    OptionSpec(name: "--student", valueName: "DIR", help: "the student folder made by 'xllama linearize'"),
    OptionSpec(name: "--data", valueName: "DIR", help: "shards made by 'xllama data prepare'"),
    OptionSpec(name: "--out", valueName: "DIR", help: "run folder: checkpoints, metrics.jsonl, loss.svg"),
    OptionSpec(name: "--tokens", valueName: "N", help: "training-token budget shared by the three stages"),
    OptionSpec(name: "--split", valueName: "A,B,C", help: "shares of the budget for stages 1, 2, 3", defaultDescription: "0.05,0.15,0.80"),
    OptionSpec(name: "--stage", valueName: "K", help: "run only stage K (1, 2 or 3), with --steps"),
    OptionSpec(name: "--steps", valueName: "N", help: "updates of the single stage"),
    OptionSpec(name: "--lr1", valueName: "LR", help: "stage 1 peak learning rate", defaultDescription: "2.5e-4"),
    OptionSpec(name: "--lr2", valueName: "LR", help: "stage 2 peak learning rate", defaultDescription: "2e-4"),
    OptionSpec(name: "--lr3", valueName: "LR", help: "stage 3 peak learning rate", defaultDescription: "4e-4"),
    OptionSpec(name: "--warmup", valueName: "F", help: "warmup as a share of each stage's steps", defaultDescription: "0.1"),
    OptionSpec(name: "--batch-size", valueName: "N", help: "rows per micro-batch", defaultDescription: "1"),
    OptionSpec(name: "--context", valueName: "N", help: "tokens per row", defaultDescription: "512"),
    OptionSpec(name: "--accumulate", valueName: "N", help: "micro-batches per update", defaultDescription: "1"),
    OptionSpec(name: "--clip", valueName: "X", help: "gradient-norm limit, 0 for none", defaultDescription: "1.0"),
    OptionSpec(name: "--weight-decay", valueName: "X", help: "AdamW weight decay", defaultDescription: "0.1"),
    OptionSpec(name: "--freeze", valueName: "PATTERNS", help: "comma-separated parameter patterns frozen in every stage run, added to the stage defaults"),
    OptionSpec(name: "--freeze1", valueName: "PATTERNS", help: "replace stage 1's frozen patterns ('none' for none)", defaultDescription: "everything outside q, k, gates and input norm"),
    OptionSpec(name: "--freeze2", valueName: "PATTERNS", help: "replace stage 2's frozen patterns", defaultDescription: "embed_tokens,lm_head,model.norm.,mlp."),
    OptionSpec(name: "--freeze3", valueName: "PATTERNS", help: "replace stage 3's frozen patterns", defaultDescription: "none"),
    OptionSpec(name: "--checkpoint-every", valueName: "N", help: "checkpoint every N updates (stage ends and Ctrl-C always checkpoint)", defaultDescription: "100"),
    OptionSpec(name: "--validate-every", valueName: "N", help: "validation loss every N updates, 0 for never", defaultDescription: "50"),
    OptionSpec(name: "--validation-batches", valueName: "N", help: "batches per validation loss", defaultDescription: "4"),
    OptionSpec(name: "--seed", valueName: "N", help: "seed of the batch order", defaultDescription: "0"),
    OptionSpec(
      name: "--precision", valueName: "P",
      help: "matrix products in bfloat16 (float32 sums, about twice as fast) or float32",
      defaultDescription: "bfloat16 where the processor has AVX-512 BF16, else float32"),
    OptionSpec(name: "--resume", valueName: nil, help: "continue the run in --out from its latest checkpoint, with its saved settings"),
    threadsOption,
  ]

  static func run(_ options: ParsedOptions) throws {
    try applyThreads(options)
    // Each step frees and reallocates the same large buffers; keep their pages.
    AllocatorTuning.keepFreedMemory()
    let teacherPath = try options.required("--teacher")
    let studentPath = try options.required("--student")
    let dataFolder = URL(fileURLWithPath: try options.required("--data"))
    let out = URL(fileURLWithPath: try options.required("--out"))

    // Settings: from the checkpoint when resuming, else from the options.
    let store = CheckpointStore(outputDirectory: out)
    let latest = try store.latestCheckpoint()
    let configuration: DistillationConfiguration
    if let latest {
      guard options.flag("--resume") else {
        throw CommandLineError.conflicting("\(out.path) already contains a run (\(latest.lastPathComponent)); pass --resume to continue it or choose another --out")
      }
      configuration = try store.readState(latest).configuration
      stderrLine("resuming from \(latest.path) with the settings saved there")
    } else {
      if options.flag("--resume") { stderrLine("no checkpoint in \(out.path); starting a new run") }
      configuration = try configurationFromOptions(options)
    }
    let precision = configuration.productPrecision ?? .float32
    if precision == .bfloat16 && !BLAS.bfloat16ProductsAvailable {
      throw CommandLineError.conflicting(
        "the run in \(out.path) computes its products in bfloat16, which needs AVX-512 BF16; this processor lacks it")
    }
    BLAS.productPrecision = precision

    let (trainShards, validationShards, manifest) = try openData(dataFolder)
    let (studentConfiguration, studentWeights, tokenizer, template, _) = try ModelLoader.open(studentPath)
    guard studentConfiguration.isStudent else {
      throw CommandLineError.conflicting("\(studentPath) is not an xLlama student (model_type '\(studentConfiguration.modelType)'); make one with 'xllama linearize --teacher \(teacherPath) --out DIR'")
    }
    guard manifest.vocabSize <= studentConfiguration.vocabularySize else {
      throw CommandLineError.conflicting("the data in \(dataFolder.path) was tokenized for a vocabulary of \(manifest.vocabSize) ids, but the student has \(studentConfiguration.vocabularySize)")
    }
    let wiring = try makeDistillationWiring(
      teacherPath: teacherPath, studentConfiguration: studentConfiguration, studentWeights: studentWeights, studentPath: studentPath)

    let distiller = try Distiller(
      configuration: configuration, parameters: wiring.parameters, trainShards: trainShards,
      validationShards: validationShards, outputDirectory: out,
      studentFormat: StudentFolderFormat(configuration: studentConfiguration, tokenizer: tokenizer, chatTemplate: template),
      objectiveFactory: wiring.objectiveFactory)
    if latest != nil { try distiller.resume() }
    if configuration.validationInterval > 0 && validationShards.isEmpty {
      stderrLine("note: \(dataFolder.path) has no validation shards, so validation is off")
    } else if configuration.validationInterval > 0, let note = distiller.validationNote {
      stderrLine("note: \(note)")
    }
    let plan = distiller.configuration.stages.map { "stage \($0.stage.rawValue): \($0.steps) steps, lr \($0.learningRate), \($0.schedule)" }
    stderrLine(
      "plan (\(distiller.configuration.tokensPerStep) tokens per step, \(precision.rawValue) products): "
        + plan.joined(separator: "; "))

    signal(SIGINT) { _ in interruptRequested = 1 }
    var lastPrint = Date.distantPast
    let outcome = try distiller.run { progress in
      let now = Date()
      if now.timeIntervalSince(lastPrint) >= 1 || progress.step == progress.totalSteps || progress.validationLoss != nil {
        stderrLine(progress.description)
        lastPrint = now
      }
      if interruptRequested != 0 {
        stderrLine("interrupted: writing a checkpoint; continue with --resume")
        return .stop
      }
      return .proceed
    }
    signal(SIGINT, SIG_DFL)
    if let checkpoint = outcome.lastCheckpoint {
      let student = checkpoint.appendingPathComponent(CheckpointStore.studentFolderName).path
      stderrLine(outcome.finished ? "done; the student is in \(student)" : "stopped at stage \(outcome.stage.rawValue) step \(outcome.step); latest student in \(student)")
    }
    stderrLine("loss curves: \(out.appendingPathComponent(Distiller.plotFileName).path)")
  }

  /// Builds the run's configuration from the command line.
  static func configurationFromOptions(_ options: ParsedOptions) throws -> DistillationConfiguration {
    var base = DistillationConfiguration(stages: [])
    base.batchSize = try options.integer("--batch-size", default: 1, range: 1...65536)
    base.contextLength = try options.integer("--context", default: 512, range: 1...1_048_576)
    base.accumulationSteps = try options.integer("--accumulate", default: 1, range: 1...65536)
    base.clipNorm = try options.float("--clip", default: 1)
    base.weightDecay = try options.float("--weight-decay", default: 0.1)
    base.checkpointInterval = try options.integer("--checkpoint-every", default: 100, range: 0...Int(Int32.max))
    base.validationInterval = try options.integer("--validate-every", default: 50, range: 0...Int(Int32.max))
    base.validationBatches = try options.integer("--validation-batches", default: 4, range: 1...65536)
    base.seed = try unsignedOption(options, "--seed", default: 0)
    if let text = options.string("--precision") {
      let precision: ProductPrecision
      switch text {
      case "bfloat16", "bf16": precision = .bfloat16
      case "float32", "f32": precision = .float32
      default:
        throw CommandLineError.invalidValue(option: "--precision", value: text, expected: "bfloat16 (bf16) or float32 (f32)")
      }
      if precision == .bfloat16 && !BLAS.bfloat16ProductsAvailable {
        throw CommandLineError.invalidValue(
          option: "--precision", value: text, expected: "float32: this processor lacks AVX-512 BF16")
      }
      base.productPrecision = precision
    } else {
      base.productPrecision = BLAS.bfloat16ProductsAvailable ? .bfloat16 : .float32
    }

    var configuration: DistillationConfiguration
    if let stageText = options.string("--stage") {
      guard options.string("--tokens") == nil, options.string("--split") == nil else {
        throw CommandLineError.conflicting("give either --stage with --steps, or --tokens with --split, not both")
      }
      guard let number = Int(stageText), let stage = MOHAWKStage(rawValue: number) else {
        throw CommandLineError.invalidValue(option: "--stage", value: stageText, expected: "1, 2 or 3")
      }
      guard options.string("--steps") != nil else {
        throw CommandLineError.missingRequired(verb: name, option: "--steps")
      }
      let steps = try options.integer("--steps", default: 0, range: 1...Int(Int32.max))
      configuration = base
      configuration.stages = [StageSettings(stage: stage, steps: steps)]
    } else {
      guard options.string("--steps") == nil else {
        throw CommandLineError.conflicting("--steps needs --stage K; for all stages give --tokens")
      }
      guard options.string("--tokens") != nil else {
        throw CommandLineError.missingRequired(verb: name, option: "--tokens (or --stage K --steps N)")
      }
      let tokens = try options.integer("--tokens", default: 0, range: 1...Int.max)
      let splitText = options.string("--split") ?? "0.05,0.15,0.80"
      let split = splitText.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
      guard split.count == 3, split.allSatisfy({ $0 != nil }) else {
        throw CommandLineError.invalidValue(option: "--split", value: splitText, expected: "three shares such as 0.05,0.15,0.80")
      }
      do {
        configuration = try DistillationConfiguration.budgeted(tokens: tokens, split: split.map { $0! }, base: base)
      } catch let error as TrainingError {
        throw CommandLineError.conflicting("--split \(splitText): \(error)")
      }
    }

    let warmup = try options.float("--warmup", default: 0.1)
    guard (0...1).contains(warmup) else {
      throw CommandLineError.invalidValue(option: "--warmup", value: "\(warmup)", expected: "a share between 0 and 1")
    }
    let extraFrozen = patterns(options.string("--freeze") ?? "")
    for index in configuration.stages.indices {
      var settings = configuration.stages[index]
      let k = settings.stage.rawValue
      settings.learningRate = try options.float("--lr\(k)", default: settings.learningRate)
      guard settings.learningRate > 0 else {
        throw CommandLineError.invalidValue(option: "--lr\(k)", value: "\(settings.learningRate)", expected: "a positive number")
      }
      let warmupSteps = Int((Double(warmup) * Double(settings.steps)).rounded())
      switch settings.schedule {
      case .warmupStableDecay(_, let decay): settings.schedule = .warmupStableDecay(warmup: warmupSteps, decayFraction: decay)
      case .linear: settings.schedule = .linear(warmup: warmupSteps)
      case .cosine: settings.schedule = .cosine(warmup: warmupSteps)
      case .constant: settings.schedule = .constant(warmup: warmupSteps)
      }
      if let replacement = options.string("--freeze\(k)") { settings.freezePatterns = patterns(replacement) }
      settings.freezePatterns += extraFrozen.filter { !settings.freezePatterns.contains($0) }
      configuration.stages[index] = settings
    }
    do {
      try configuration.validate()
    } catch let error as TrainingError {
      throw CommandLineError.conflicting("\(error)")
    }
    return configuration
  }

  /// Splits a comma-separated pattern list; `none` or an empty text gives no patterns.
  static func patterns(_ text: String) -> [String] {
    if text.trimmingCharacters(in: .whitespaces) == "none" { return [] }
    return text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
  }

  /// Opens the shards listed in the data folder's manifest.
  static func openData(_ folder: URL) throws -> (train: [TokenShardReader], validation: [TokenShardReader], manifest: DataManifest) {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder), isFolder.boolValue else {
      throw CommandLineError.conflicting("data folder \(folder.path) does not exist; make it with 'xllama data prepare --model M --input FILES --out \(folder.path)'")
    }
    guard FileManager.default.fileExists(atPath: folder.appendingPathComponent(DataManifest.fileName).path) else {
      throw CommandLineError.conflicting("\(folder.path) has no \(DataManifest.fileName); it is not a folder made by 'xllama data prepare'")
    }
    let manifest = try DataManifest.load(from: folder)
    guard !manifest.train.isEmpty else {
      throw CommandLineError.conflicting("\(folder.path) contains no training shards; every document went to validation, so lower --validation in 'xllama data prepare'")
    }
    let train = try manifest.train.map { try TokenShardReader(url: folder.appendingPathComponent($0.file)) }
    let validation = try manifest.validation.map { try TokenShardReader(url: folder.appendingPathComponent($0.file)) }
    return (train, validation, manifest)
  }

  /// Checks that the teacher and student share the sizes distillation compares.
  static func checkCompatible(teacher: ModelConfiguration, student: ModelConfiguration, teacherPath: String, studentPath: String) throws {
    guard !teacher.isStudent else {
      throw CommandLineError.conflicting("\(teacherPath) is an xLlama student; --teacher needs the Llama model it was made from")
    }
    let pairs: [(String, Int, Int)] = [
      ("layers", teacher.layerCount, student.layerCount), ("hidden size", teacher.hiddenSize, student.hiddenSize),
      ("heads", teacher.headCount, student.headCount), ("vocabulary", teacher.vocabularySize, student.vocabularySize),
    ]
    for (what, t, s) in pairs where t != s {
      throw CommandLineError.conflicting("teacher \(teacherPath) has \(t) \(what) but student \(studentPath) has \(s); was the student made from this teacher?")
    }
  }
}
