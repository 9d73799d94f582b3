import Foundation
import Testing
import XLFormats
import XLModels
import XLTensors

@Suite("Command-line workflows on a tiny model")
struct WorkflowTests {
  @Test("every verb has help", arguments: [
    "generate", "chat", "tokenize", "score", "inspect", "linearize", "data", "distill", "plot", "eval", "bench",
  ])
  func help(verb: String) throws {
    let result = try CLI.run([verb, "--help"])
    #expect(result.status == 0)
    #expect(result.stdout.contains("usage: xllama \(verb)"))
    #expect(result.stdout.contains("--help"))
  }

  @Test("tokenize, score and generate on a teacher folder")
  func teacherVerbs() throws {
    let folder = try TinyModelFolders.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    try TinyModelFolders.writeTeacher(to: folder)

    let tokenized = try CLI.run(["tokenize", "--model", folder.path, "--text", "ab<|im_end|>"])
    #expect(tokenized.status == 0, "\(tokenized.stderr)")
    #expect(tokenized.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[97, 98, 258]")

    let scored = try CLI.run(["score", "--model", folder.path, "--ids", "[97, 98, 99]"])
    #expect(scored.status == 0, "\(scored.stderr)")
    let json = try #require(try JSONSerialization.jsonObject(with: Data(scored.stdout.utf8)) as? [String: Any])
    let rows = try #require(json["tokens"] as? [[String: Any]])
    #expect(rows.count == 2)
    #expect(rows.allSatisfy { ($0["logprob"] as? Double).map { $0 < 0 } ?? false })

    let first = try CLI.run(["generate", "--model", folder.path, "--prompt", "abc", "--max-tokens", "8", "--temperature", "0.8", "--seed", "4"])
    let second = try CLI.run(["generate", "--model", folder.path, "--prompt", "abc", "--max-tokens", "8", "--temperature", "0.8", "--seed", "4"])
    #expect(first.status == 0, "\(first.stderr)")
    #expect(first.stdout == second.stdout)
    #expect(first.stderr.contains("tok/s"))
  }

  @Test("bench compares two models")
  func benchAgainst() throws {
    let root = try TinyModelFolders.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let teacher = root.appendingPathComponent("teacher")
    let student = root.appendingPathComponent("student")
    try TinyModelFolders.writeTeacher(to: teacher)
    let linearized = try CLI.run(["linearize", "--teacher", teacher.path, "--out", student.path])
    #expect(linearized.status == 0, "\(linearized.stderr)")

    let bench = try CLI.run([
      "bench", "--model", teacher.path, "--against", student.path, "--prompt-tokens", "8", "--gen-tokens", "6",
      "--depths", "0,5", "--repeats", "1", "--json",
    ])
    #expect(bench.status == 0, "\(bench.stderr)")
    let lines = try bench.stdout.split(separator: "\n").map { line in
      try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }
    func speed(_ what: String) -> Double? { lines.first { $0["what"] as? String == what }?["tok_s"] as? Double }
    func ratio(_ what: String) -> Double? { lines.first { $0["what"] as? String == what }?["ratio"] as? Double }
    for depth in [0, 5] {
      let first = try #require(speed("decode 6 at depth \(depth) (\(teacher.path))"))
      let second = try #require(speed("decode 6 at depth \(depth) (\(student.path))"))
      let reported = try #require(ratio("decode ratio at depth \(depth), second over first, median over runs"))
      #expect(first > 0)
      #expect(second > 0)
      // The output rounds the speeds to 0.1 tok/s, and the ratio is computed before rounding.
      #expect(abs(reported - second / first) <= 0.002 + 0.1 / first)
    }
    #expect(speed("prefill 8 (\(teacher.path))") != nil)
    #expect(ratio("prefill ratio, second over first") != nil)

    let missing = try CLI.run(["bench", "--model", teacher.path, "--against", root.appendingPathComponent("absent").path])
    #expect(missing.status != 0)
    #expect(missing.stderr.contains("absent"))
  }

  @Test("linearize then generate and resume a student")
  func studentVerbs() throws {
    let root = try TinyModelFolders.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: root) }
    let teacher = root.appendingPathComponent("teacher")
    let student = root.appendingPathComponent("student")
    try TinyModelFolders.writeTeacher(to: teacher)
    let linearized = try CLI.run(["linearize", "--teacher", teacher.path, "--out", student.path, "--dtype", "bf16"])
    #expect(linearized.status == 0, "\(linearized.stderr)")
    for file in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
      #expect(FileManager.default.fileExists(atPath: student.appendingPathComponent(file).path), "\(file)")
    }
    let again = try CLI.run(["linearize", "--teacher", teacher.path, "--out", student.path])
    #expect(again.status != 0)
    #expect(again.stderr.contains("--force"))

    let state = root.appendingPathComponent("state.safetensors")
    let saved = try CLI.run(["generate", "--model", student.path, "--prompt", "hello", "--max-tokens", "4", "--save-state", state.path])
    #expect(saved.status == 0, "\(saved.stderr)")
    let resumed = try CLI.run(["generate", "--model", student.path, "--prompt", " more", "--max-tokens", "4", "--load-state", state.path])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    let teacherState = try CLI.run(["generate", "--model", teacher.path, "--prompt", "x", "--max-tokens", "2", "--load-state", state.path])
    #expect(teacherState.status != 0)
    #expect(teacherState.stderr.contains("student"))

    // Saving is checked before generating: nothing reaches stdout.
    let teacherSave = try CLI.run(["generate", "--model", teacher.path, "--prompt", "x", "--max-tokens", "2", "--save-state", state.path])
    #expect(teacherSave.status != 0)
    #expect(teacherSave.stdout.isEmpty)
    let missingFolder = try CLI.run(["generate", "--model", student.path, "--prompt", "x", "--save-state", "/nonexistent/dir/s.st"])
    #expect(missingFolder.status != 0)
    #expect(missingFolder.stdout.isEmpty)
    #expect(missingFolder.stderr.contains("/nonexistent/dir"))

    // A chat saved by one run continues in the next.
    let chatState = root.appendingPathComponent("chat.safetensors")
    let firstTurn = try CLI.run(["chat", "--model", student.path, "--max-tokens", "3", "--save-state", chatState.path], input: "hi\n\n")
    #expect(firstTurn.status == 0, "\(firstTurn.stderr)")
    let secondTurn = try CLI.run(["chat", "--model", student.path, "--max-tokens", "3", "--load-state", chatState.path], input: "again\n\n")
    #expect(secondTurn.status == 0, "\(secondTurn.stderr)")
    #expect(secondTurn.stderr.contains("continuing a chat of 2 messages"))
    let plainOnChat = try CLI.run(["generate", "--model", student.path, "--prompt", "x", "--load-state", chatState.path])
    #expect(plainOnChat.status != 0)
    #expect(plainOnChat.stderr.contains("--chat"))
  }

  @Test("chat reads turns until an empty line")
  func chat() throws {
    let folder = try TinyModelFolders.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    try TinyModelFolders.writeTeacher(to: folder)
    let result = try CLI.run(["chat", "--model", folder.path, "--max-tokens", "3"], input: "hi\nagain\n\n")
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.components(separatedBy: "> ").count == 4)
  }
}
