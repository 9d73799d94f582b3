import Foundation
import XLFormats
import XLModels
import XLTensors
import XLTokenizer

/// Everything a checkpoint remembers besides the weights and the optimizer moments, saved as
/// `training_state.json`.
///
/// The batch order is a pure function of the configuration's seed and the batcher position,
/// so seed and position together are the run's whole random state.
public struct TrainingState: Codable, Sendable, Equatable {
  public var version = 1
  public var configuration: DistillationConfiguration
  /// Index into `configuration.stages` of the stage the checkpoint belongs to.
  public var stageIndex: Int
  /// Updates finished in that stage; equal to its `steps` when the stage is complete.
  public var step: Int
  public var batcherPosition: BatcherPosition
  /// Training tokens consumed over the whole run.
  public var tokensSeen: Int
  /// Training seconds over the whole run, across resumptions.
  public var elapsedSeconds: Double
  /// Length in bytes of `metrics.jsonl` when the checkpoint was taken. Resuming cuts the log
  /// back to it, so steps redone after a crash are not logged twice.
  public var metricsBytes: UInt64

  public init(
    configuration: DistillationConfiguration, stageIndex: Int, step: Int,
    batcherPosition: BatcherPosition, tokensSeen: Int, elapsedSeconds: Double, metricsBytes: UInt64
  ) {
    self.configuration = configuration
    self.stageIndex = stageIndex
    self.step = step
    self.batcherPosition = batcherPosition
    self.tokensSeen = tokensSeen
    self.elapsedSeconds = elapsedSeconds
    self.metricsBytes = metricsBytes
  }

  enum CodingKeys: String, CodingKey {
    case version, configuration, step
    case stageIndex = "stage_index"
    case batcherPosition = "batcher_position"
    case tokensSeen = "tokens_seen"
    case elapsedSeconds = "elapsed_seconds"
    case metricsBytes = "metrics_bytes"
  }
}

/// The files of a student folder besides its weights (configuration, tokenizer and chat
/// template, copied from the student being trained), so a checkpoint loads as a model.
public struct StudentFolderFormat {
  public var configuration: ModelConfiguration
  public var tokenizer: BPETokenizer
  public var chatTemplate: ChatTemplate?

  public init(configuration: ModelConfiguration, tokenizer: BPETokenizer, chatTemplate: ChatTemplate?) {
    self.configuration = configuration
    self.tokenizer = tokenizer
    self.chatTemplate = chatTemplate
  }
}

/// The checkpoints of a run inside its output folder.
///
/// Layout:
/// ```
/// OUT/latest.json                          {"checkpoint": "checkpoints/stage2-step000040"}
/// OUT/checkpoints/stage2-step000040/student/            model.safetensors (F32), and with a
///                                                       StudentFolderFormat a full HF folder
/// OUT/checkpoints/stage2-step000040/optimizer.safetensors   AdamW state (`Optimizer.stateTensors`)
/// OUT/checkpoints/stage2-step000040/training_state.json     `TrainingState`
/// ```
/// A checkpoint is written whole into `checkpoints/.tmp-NAME-PID`, renamed to its final name,
/// and only then named by `latest.json` (itself replaced atomically), so a crash at any point
/// leaves `latest.json` naming a complete checkpoint. A stage's last checkpoint is named
/// `stageK-final` and kept; older mid-stage checkpoints are deleted once a newer one is in place.
public struct CheckpointStore {
  public let outputDirectory: URL
  public static let latestFileName = "latest.json"
  public static let stateFileName = "training_state.json"
  public static let optimizerFileName = "optimizer.safetensors"
  public static let studentFolderName = "student"

  public init(outputDirectory: URL) { self.outputDirectory = outputDirectory }

  public var checkpointsDirectory: URL { outputDirectory.appendingPathComponent("checkpoints") }

  /// Checkpoint folder name for `step` of `stage`: `stageK-final` when `final`, else
  /// `stageK-stepNNNNNN`.
  public static func checkpointName(stage: MOHAWKStage, step: Int, final: Bool) -> String {
    final ? "stage\(stage.rawValue)-final" : String(format: "stage%d-step%06d", stage.rawValue, step)
  }

  /// Returns the folder `latest.json` names, or nil when the run has no checkpoint yet.
  public func latestCheckpoint() throws -> URL? {
    let url = outputDirectory.appendingPathComponent(Self.latestFileName)
    guard FileManager.default.fileExists(atPath: url.path) else { return nil }
    let object = try? JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any]
    guard let relative = object?["checkpoint"] as? String else {
      throw TrainingError.fileOperationFailed(
        path: url.path, operation: "read the checkpoint pointer",
        reason: "expected a JSON object with a string field 'checkpoint'")
    }
    let folder = outputDirectory.appendingPathComponent(relative)
    guard FileManager.default.fileExists(atPath: folder.appendingPathComponent(Self.stateFileName).path) else {
      throw TrainingError.fileOperationFailed(
        path: folder.path, operation: "open the checkpoint named by \(url.path)",
        reason: "\(Self.stateFileName) is missing")
    }
    return folder
  }

  /// Writes one complete checkpoint and makes it the latest; returns its folder.
  @discardableResult
  public func write(
    name: String, parameters: ParameterStore, optimizer: Optimizer, state: TrainingState,
    studentFormat: StudentFolderFormat?
  ) throws -> URL {
    let manager = FileManager.default
    let final = checkpointsDirectory.appendingPathComponent(name)
    let temporary = checkpointsDirectory.appendingPathComponent(".tmp-\(name)-\(getpid())")
    try fileOperation(temporary.path, "create the checkpoint folder") {
      try manager.createDirectory(at: checkpointsDirectory, withIntermediateDirectories: true)
      if manager.fileExists(atPath: temporary.path) { try manager.removeItem(at: temporary) }
      try manager.createDirectory(at: temporary, withIntermediateDirectories: true)
    }

    let student = temporary.appendingPathComponent(Self.studentFolderName)
    let tensors = parameters.names.map { (name: $0, tensor: parameters.value($0)!) }
    if let format = studentFormat {
      try CheckpointWriter.write(
        configuration: format.configuration, tensors: tensors, dtype: .f32, tokenizer: format.tokenizer,
        chatTemplate: format.chatTemplate, to: student)
    } else {
      try fileOperation(student.path, "create the folder") {
        try manager.createDirectory(at: student, withIntermediateDirectories: true)
      }
      try SafetensorsWriter.write(
        tensors, dtype: .f32, metadata: ["format": "pt"], to: student.appendingPathComponent("model.safetensors"))
    }
    let optimizerTensors = optimizer.stateTensors().sorted { $0.key < $1.key }.map { (name: $0.key, tensor: $0.value) }
    try SafetensorsWriter.write(
      optimizerTensors, dtype: .f32, to: temporary.appendingPathComponent(Self.optimizerFileName))
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(try encoder.encode(state), to: temporary.appendingPathComponent(Self.stateFileName))

    // A folder of this name can only be left over from a run that crashed after writing it
    // but before naming it latest, or be the checkpoint being replaced at the same step.
    if manager.fileExists(atPath: final.path) {
      try fileOperation(final.path, "remove the stale checkpoint") { try manager.removeItem(at: final) }
    }
    try AtomicFile.rename(temporary, to: final)
    let pointer = try JSONSerialization.data(
      withJSONObject: ["checkpoint": "checkpoints/\(name)"], options: [.sortedKeys, .withoutEscapingSlashes])
    try AtomicFile.write(pointer + Data("\n".utf8), to: outputDirectory.appendingPathComponent(Self.latestFileName))
    prune(keeping: name)
    return final
  }

  /// Deletes mid-stage checkpoints other than `name` and temporary folders of this process.
  /// Failures are ignored: a leftover folder wastes space but never misleads a resume.
  func prune(keeping name: String) {
    let manager = FileManager.default
    guard let entries = try? manager.contentsOfDirectory(atPath: checkpointsDirectory.path) else { return }
    for entry in entries where entry != name {
      let midStage = entry.hasPrefix("stage") && entry.contains("-step")
      let temporary = entry.hasPrefix(".tmp-") && entry.hasSuffix("-\(getpid())")
      if midStage || temporary {
        try? manager.removeItem(at: checkpointsDirectory.appendingPathComponent(entry))
      }
    }
  }

  /// Reads a checkpoint's state, puts its weights into `parameters` (every parameter of the
  /// store must be in the checkpoint with the same shape) and returns the state and the
  /// optimizer tensors.
  public func read(_ folder: URL, into parameters: ParameterStore) throws -> (TrainingState, [String: Tensor]) {
    let state = try readState(folder)
    let weights = try SafetensorsFile(
      url: folder.appendingPathComponent(Self.studentFolderName).appendingPathComponent("model.safetensors"))
    for name in parameters.names {
      try parameters.setValue(name, try weights.tensor(named: name))
    }
    let optimizerFile = try SafetensorsFile(url: folder.appendingPathComponent(Self.optimizerFileName))
    var optimizerTensors: [String: Tensor] = [:]
    for name in optimizerFile.tensorNames { optimizerTensors[name] = try optimizerFile.tensor(named: name) }
    return (state, optimizerTensors)
  }

  /// Reads only a checkpoint's `training_state.json`.
  public func readState(_ folder: URL) throws -> TrainingState {
    let stateURL = folder.appendingPathComponent(Self.stateFileName)
    do {
      return try JSONDecoder().decode(TrainingState.self, from: Data(contentsOf: stateURL))
    } catch {
      throw TrainingError.fileOperationFailed(path: stateURL.path, operation: "read the training state", reason: "\(error)")
    }
  }

  private func fileOperation(_ path: String, _ operation: String, _ body: () throws -> Void) throws {
    do {
      try body()
    } catch {
      throw TrainingError.fileOperationFailed(path: path, operation: operation, reason: error.localizedDescription)
    }
  }
}
