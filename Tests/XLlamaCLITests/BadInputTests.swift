import Foundation
import Testing
import XLFormats
import XLModels
import XLTensors

/// Bad input gets one clear line on stderr and a non-zero exit, never a crash or a hang.
@Suite("Command line rejects bad input")
struct BadInputTests {
  /// Checks that the process exited (no signal) with a non-zero status and one `error:` line.
  func expectCleanFailure(_ result: CLI.Result, mentioning fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.status != 0, sourceLocation: sourceLocation)
    #expect(!result.crashed, "ended by signal \(result.status)", sourceLocation: sourceLocation)
    let lines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
    #expect(lines.count == 1, "stderr: \(result.stderr)", sourceLocation: sourceLocation)
    #expect(result.stderr.contains(fragment), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
  }

  @Test("missing model file")
  func missingFile() throws {
    let result = try CLI.run(["generate", "--model", "/nonexistent/model.gguf", "--prompt", "hi"])
    expectCleanFailure(result, mentioning: "/nonexistent/model.gguf")
  }

  @Test("unknown option and unknown verb")
  func unknownOption() throws {
    let option = try CLI.run(["generate", "--model", "x", "--bogus", "1"])
    expectCleanFailure(option, mentioning: "--bogus")
    #expect(option.status == 2)
    let verb = try CLI.run(["frobnicate"])
    expectCleanFailure(verb, mentioning: "frobnicate")
  }

  @Test("invalid option values")
  func invalidValues() throws {
    let folder = try TinyModelFolders.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    try TinyModelFolders.writeTeacher(to: folder)
    expectCleanFailure(try CLI.run(["generate", "--model", folder.path, "--prompt", "a", "--max-tokens", "zero"]), mentioning: "--max-tokens")
    expectCleanFailure(try CLI.run(["generate", "--model", folder.path, "--prompt", "a", "--top-p", "1.5"]), mentioning: "top-p")
    expectCleanFailure(try CLI.run(["score", "--model", folder.path, "--ids", "[1, \"x\"]"]), mentioning: "--ids")
    expectCleanFailure(try CLI.run(["score", "--model", folder.path, "--ids", "[1, 999999]"]), mentioning: "999999")
  }

  @Test("GGUF with a bad magic")
  func badMagic() throws {
    let folder = try TinyModelFolders.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let file = folder.appendingPathComponent("bad.gguf")
    try Data("GGUX and some more bytes to look like a header".utf8).write(to: file)
    expectCleanFailure(try CLI.run(["inspect", "--model", file.path]), mentioning: file.path)
  }

  @Test("truncated GGUF")
  func truncatedGGUF() throws {
    let folder = try TinyModelFolders.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let whole = folder.appendingPathComponent("whole.gguf")
    try GGUFWriter.write(
      metadata: [("general.architecture", .string("llama"))],
      tensors: [(name: "token_embd.weight", tensor: Tensor(zeros: [64, 32]), type: .f32)], to: whole)
    let data = try Data(contentsOf: whole)
    for length in [10, 40, data.count - 100] {
      let cut = folder.appendingPathComponent("cut-\(length).gguf")
      try data.prefix(length).write(to: cut)
      expectCleanFailure(try CLI.run(["inspect", "--model", cut.path]), mentioning: cut.path)
    }
  }

  @Test("GGUF with an absurd tensor count")
  func absurdCount() throws {
    let folder = try TinyModelFolders.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    var bytes = Data("GGUF".utf8)
    for value: UInt64 in [3, 1 << 60, 0] {
      withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: value == 3 ? Array($0.prefix(4)) : Array($0)) }
    }
    let file = folder.appendingPathComponent("absurd.gguf")
    try bytes.write(to: file)
    expectCleanFailure(try CLI.run(["inspect", "--model", file.path]), mentioning: file.path)
  }

  @Test("safetensors header past the end")
  func corruptSafetensors() throws {
    let folder = try TinyModelFolders.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    try TinyModelFolders.writeTeacher(to: folder)
    var bytes = Data()
    withUnsafeBytes(of: UInt64(1_000_000).littleEndian) { bytes.append(contentsOf: $0) }
    bytes.append(Data("{\"a\":".utf8))
    try bytes.write(to: folder.appendingPathComponent("model.safetensors"))
    expectCleanFailure(try CLI.run(["generate", "--model", folder.path, "--prompt", "hi"]), mentioning: "model.safetensors")
  }

  @Test("config with a missing field")
  func missingConfigField() throws {
    let folder = try TinyModelFolders.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    try TinyModelFolders.writeTeacher(to: folder) { $0.removeValue(forKey: "hidden_size") }
    expectCleanFailure(try CLI.run(["generate", "--model", folder.path, "--prompt", "hi"]), mentioning: "hidden_size")
  }

  @Test("prompt longer than the context")
  func promptTooLong() throws {
    let folder = try TinyModelFolders.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    try TinyModelFolders.writeTeacher(to: folder)
    let prompt = String(repeating: "a", count: 100)
    expectCleanFailure(try CLI.run(["generate", "--model", folder.path, "--prompt", prompt, "--max-tokens", "4"]), mentioning: "context")
  }

  @Test("teacher tensor of the wrong shape")
  func wrongShape() throws {
    let folder = try TinyModelFolders.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    try TinyModelFolders.writeTeacher(to: folder) { $0["intermediate_size"] = 48 }
    expectCleanFailure(try CLI.run(["generate", "--model", folder.path, "--prompt", "hi"]), mentioning: "mlp.gate_proj.weight")
  }
}

/// A student folder whose config and tensors disagree is rejected, naming the tensor or key.
@Suite("Student folders are checked")
struct StudentFolderTests {
  func linearizedStudent() throws -> (root: URL, student: URL) {
    let root = try TinyModelFolders.temporaryFolder()
    let teacher = root.appendingPathComponent("teacher")
    let student = root.appendingPathComponent("student")
    try TinyModelFolders.writeTeacher(to: teacher)
    let result = try CLI.run(["linearize", "--teacher", teacher.path, "--out", student.path])
    #expect(result.status == 0, "linearize failed: \(result.stderr)")
    return (root, student)
  }

  func editConfig(_ student: URL, _ edit: (inout [String: Any]) -> Void) throws {
    let url = student.appendingPathComponent("config.json")
    var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    edit(&json)
    try JSONSerialization.data(withJSONObject: json).write(to: url)
  }

  func expectRejected(_ student: URL, mentioning fragment: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let result = try CLI.run(["generate", "--model", student.path, "--prompt", "hi", "--max-tokens", "2"])
    #expect(result.status != 0, sourceLocation: sourceLocation)
    #expect(!result.crashed, sourceLocation: sourceLocation)
    #expect(result.stderr.contains(fragment), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
  }

  @Test("missing tensor is named")
  func missingTensor() throws {
    let (root, student) = try linearizedStudent()
    defer { try? FileManager.default.removeItem(at: root) }
    let weights = try SafetensorsFile(url: student.appendingPathComponent("model.safetensors"))
    let kept = try weights.tensorNames.filter { $0 != "model.layers.1.self_attn.fgate_preact.bias" }
      .map { (name: $0, tensor: try weights.tensor(named: $0)) }
    try SafetensorsWriter.write(kept, dtype: .f32, to: student.appendingPathComponent("model.safetensors"))
    try expectRejected(student, mentioning: "model.layers.1.self_attn.fgate_preact.bias")
  }

  @Test("wrong shape is named")
  func wrongShape() throws {
    let (root, student) = try linearizedStudent()
    defer { try? FileManager.default.removeItem(at: root) }
    try editConfig(student) { $0["num_hidden_layers"] = 3 }
    try expectRejected(student, mentioning: "model.layers.2.")
  }

  @Test("unknown model_type is named")
  func unknownModelType() throws {
    let (root, student) = try linearizedStudent()
    defer { try? FileManager.default.removeItem(at: root) }
    try editConfig(student) { $0["model_type"] = "mamba" }
    try expectRejected(student, mentioning: "model_type")
  }

  @Test("heads not dividing the width")
  func headsNotDividing() throws {
    let (root, student) = try linearizedStudent()
    defer { try? FileManager.default.removeItem(at: root) }
    try editConfig(student) {
      $0["num_attention_heads"] = 5
      $0.removeValue(forKey: "head_dim")
    }
    try expectRejected(student, mentioning: "num_attention_heads")
  }
}
