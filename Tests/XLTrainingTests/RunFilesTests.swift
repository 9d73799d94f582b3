import Foundation
import Testing
import XLTensors
@testable import XLTraining

@Suite("Run files")
struct RunFilesTests {
  @Test("atomic write replaces and leaves no temporary")
  func atomicWrite() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let url = folder.appendingPathComponent("state.json")
    try AtomicFile.write(Data("one".utf8), to: url)
    try AtomicFile.write(Data("two".utf8), to: url)
    #expect(try String(contentsOf: url, encoding: .utf8) == "two")
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["state.json"])
  }

  @Test("metrics logger appends lines")
  func metrics() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let url = folder.appendingPathComponent("metrics.jsonl")
    let progress = TrainingProgress(
      stage: "2", step: 3, totalSteps: 10, loss: 0.5, learningRate: 2e-4,
      tokensPerSecond: 100, secondsRemaining: 70)
    try MetricsLogger(url: url).append(progress)
    let reopened = try MetricsLogger(url: url)
    var nan = progress
    nan.loss = .nan
    try reopened.append(nan)
    let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 2)
    let decoded = try JSONDecoder().decode(TrainingProgress.self, from: Data(lines[0].utf8))
    #expect(decoded == progress)
    #expect(lines[1].contains("\"loss\":\"nan\""))
  }

  @Test("progress line and ETA")
  func progressLine() {
    let progress = TrainingProgress(
      stage: "2", step: 120, totalSteps: 1000, loss: 0.42131, learningRate: 2e-4,
      tokensSeen: 120 * 512, elapsedSeconds: 60)
    #expect(progress.description == "stage 2 step 120/1000 loss 0.4213 lr 2.00e-04 1024 tok/s ETA 7m20s")
    #expect(TrainingProgress.formatDuration(3 * 3600 + 7 * 60 + 5) == "3h07m")
    #expect(TrainingProgress.formatDuration(45) == "45s")
  }

  @Test("non-finite loss is a typed error")
  func nonFinite() throws {
    #expect(try checkFinite(loss: 1.5, stage: "3", step: 4) == 1.5)
    #expect(throws: TrainingError.self) { try checkFinite(loss: .infinity, stage: "3", step: 4) }
    do {
      try checkFinite(loss: .nan, stage: "1 matrix orientation", step: 17)
      Issue.record("expected an error")
    } catch let error as TrainingError {
      guard case .nonFiniteLoss(let stage, let step, let value) = error else {
        Issue.record("wrong case \(error)")
        return
      }
      #expect(stage == "1 matrix orientation")
      #expect(step == 17)
      #expect(value.isNaN)
      #expect(error.description.contains("stage 1 matrix orientation, step 17"))
    }
  }
}
