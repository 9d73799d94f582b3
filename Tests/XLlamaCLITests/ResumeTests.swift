import Foundation
import Testing

/// `xllama distill` killed with SIGKILL mid-stage and resumed gives the same losses, step for
/// step, as a run that was never interrupted.
@Suite("Distillation survives SIGKILL")
struct ResumeTests {
  /// Reads `stage:step:loss` from every line of a run's metrics.jsonl, as written (bit for bit).
  static func losses(in run: URL) throws -> [String] {
    let text = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    return try text.split(separator: "\n").map { line in
      let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
      return "\(object["stage"] ?? "?"):\(object["step"] ?? "?"):\(object["loss"] ?? "?")"
    }
  }

  @Test("killed run resumes to the same losses")
  func killedRunResumes() throws {
    let root = try TinyModelFolders.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let teacher = root.appendingPathComponent("teacher")
    let student = root.appendingPathComponent("student")
    try TinyModelFolders.writeTeacher(to: teacher)
    #expect(try CLI.run(["linearize", "--teacher", teacher.path, "--out", student.path]).status == 0)
    let text = root.appendingPathComponent("corpus.txt")
    let sentences = (0..<400).map { "Sentence number \($0) walks past the lighthouse at dusk." }
    try sentences.joined(separator: "\n\n").write(to: text, atomically: true, encoding: .utf8)
    let shards = root.appendingPathComponent("shards")
    let prepared = try CLI.run([
      "data", "prepare", "--model", teacher.path, "--input", text.path, "--out", shards.path,
      "--split-paragraphs", "--validation", "0.05",
    ])
    #expect(prepared.status == 0, "\(prepared.stderr)")

    func distillArguments(_ out: URL) -> [String] {
      [
        "distill", "--teacher", teacher.path, "--student", student.path, "--data", shards.path,
        "--out", out.path, "--tokens", "24000", "--split", "0.2,0.2,0.6", "--context", "32",
        "--checkpoint-every", "25", "--validate-every", "40", "--threads", "1",
      ]
    }

    let whole = root.appendingPathComponent("whole")
    let uninterrupted = try CLI.run(distillArguments(whole), timeout: 600)
    #expect(uninterrupted.status == 0, "\(uninterrupted.stderr)")
    let expected = try Self.losses(in: whole)
    #expect(expected.count > 100)

    // Start the same run, SIGKILL it once a mid-stage checkpoint exists, then resume.
    let killed = root.appendingPathComponent("killed")
    let process = Process()
    process.executableURL = CLI.executable
    process.arguments = distillArguments(killed)
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    let latest = killed.appendingPathComponent("latest.json")
    let deadline = Date().addingTimeInterval(300)
    while process.isRunning && Date() < deadline {
      if let data = try? Data(contentsOf: latest), let name = String(data: data, encoding: .utf8),
        name.contains("stage1") || name.contains("stage2") || name.contains("stage3-step")
      {
        if let lines = try? Self.losses(in: killed), lines.count > 30 { break }
      }
      usleep(2_000)
    }
    let wasRunning = process.isRunning
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    #expect(wasRunning, "the run finished before it could be killed; make it longer")
    #expect(process.terminationReason == .uncaughtSignal)

    let resumed = try CLI.run(["distill", "--out", killed.path, "--resume"] + Array(distillArguments(killed).dropFirst()), timeout: 600)
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(try Self.losses(in: killed) == expected)
  }
}
