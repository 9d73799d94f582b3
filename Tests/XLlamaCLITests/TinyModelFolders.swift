import Foundation
import XLFormats
import XLModels
import XLTensors

/// Small random models written as Hugging Face folders, for driving the command line without
/// the real model.
enum TinyModelFolders {
  static let configuration = ModelConfiguration(
    modelType: "llama", hiddenSize: 32, intermediateSize: 64, layerCount: 2, headCount: 4,
    keyValueHeadCount: 2, vocabularySize: 300, rmsNormEps: 1e-5, ropeTheta: 10000,
    tieWordEmbeddings: true, maxPositionEmbeddings: 64, bosTokenID: nil, eosTokenIDs: [257])

  /// A tokenizer.json whose vocabulary is the 256 byte tokens, then `<|endoftext|>`,
  /// `<|im_start|>`, `<|im_end|>` and filler tokens up to `size`; no merges.
  static func tokenizerJSON(size: Int) throws -> Data {
    var vocabulary: [String: Int] = [:]
    for byte in 0..<256 { vocabulary[byteLevelCharacter(UInt8(byte))] = byte }
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    for (offset, token) in specials.enumerated() { vocabulary[token] = 256 + offset }
    for id in (256 + specials.count)..<size { vocabulary["<filler_\(id)>"] = id }
    let added = specials.enumerated().map { offset, token -> [String: Any] in
      ["id": 256 + offset, "content": token, "special": true]
    }
    let json: [String: Any] = [
      "added_tokens": added,
      "model": ["type": "BPE", "vocab": vocabulary, "merges": [String]()],
    ]
    return try JSONSerialization.data(withJSONObject: json)
  }

  /// The GPT-2 byte-to-character table: printable Latin-1 bytes map to themselves, the rest to
  /// code points from 256 upward in byte order.
  static func byteLevelCharacter(_ byte: UInt8) -> String {
    let printable = (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte)
    if printable { return String(UnicodeScalar(byte)) }
    var shifted = 0
    for candidate in 0..<Int(byte) {
      let value = UInt8(candidate)
      if !((33...126).contains(value) || (161...172).contains(value) || (174...255).contains(value)) { shifted += 1 }
    }
    return String(UnicodeScalar(UInt32(256 + shifted))!)
  }

  static func teacherTensors(_ c: ModelConfiguration, seed: UInt64 = 1) -> [(name: String, tensor: Tensor)] {
    var random = SplitMix64(seed: seed)
    func tensor(_ shape: [Int], norm: Bool = false) -> Tensor {
      let count = shape.reduce(1, *)
      return Tensor(shape: shape, data: (0..<count).map { _ in norm ? 1 : random.nextNormal() * 0.1 })
    }
    let d = c.hiddenSize
    let q = c.headCount * c.headDim
    let kv = c.keyValueHeadCount * c.headDim
    var result: [(String, Tensor)] = [("model.embed_tokens.weight", tensor([c.vocabularySize, d]))]
    for layer in 0..<c.layerCount {
      let p = "model.layers.\(layer)."
      result += [
        (p + "input_layernorm.weight", tensor([d], norm: true)),
        (p + "self_attn.q_proj.weight", tensor([q, d])),
        (p + "self_attn.k_proj.weight", tensor([kv, d])),
        (p + "self_attn.v_proj.weight", tensor([kv, d])),
        (p + "self_attn.o_proj.weight", tensor([d, q])),
        (p + "post_attention_layernorm.weight", tensor([d], norm: true)),
        (p + "mlp.gate_proj.weight", tensor([c.intermediateSize, d])),
        (p + "mlp.up_proj.weight", tensor([c.intermediateSize, d])),
        (p + "mlp.down_proj.weight", tensor([d, c.intermediateSize])),
      ]
    }
    result.append(("model.norm.weight", tensor([d], norm: true)))
    return result
  }

  /// Writes a teacher folder; `editConfig` may change config.json before it is written.
  static func writeTeacher(
    to folder: URL, configuration c: ModelConfiguration = configuration,
    editConfig: (inout [String: Any]) -> Void = { _ in }
  ) throws {
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try SafetensorsWriter.write(teacherTensors(c), dtype: .f32, to: folder.appendingPathComponent("model.safetensors"))
    var config = c.configJSON()
    editConfig(&config)
    try JSONSerialization.data(withJSONObject: config).write(to: folder.appendingPathComponent("config.json"))
    try tokenizerJSON(size: c.vocabularySize).write(to: folder.appendingPathComponent("tokenizer.json"))
    let template = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    try JSONSerialization.data(withJSONObject: ["chat_template": template, "eos_token": "<|endoftext|>"])
      .write(to: folder.appendingPathComponent("tokenizer_config.json"))
  }

  static func temporaryFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("xllama-cli-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }
}

/// Runs the built `xllama` binary and captures its output.
enum CLI {
  struct Result {
    let status: Int32
    /// True when a signal ended the process (a crash), whatever its status.
    let crashed: Bool
    let stdout: String
    let stderr: String
  }

  /// The `xllama` executable beside this test bundle in the build folder.
  static var executable: URL {
    var folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
      let candidate = folder.appendingPathComponent("xllama")
      if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
      folder = folder.deletingLastPathComponent()
    }
    return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("xllama")
  }

  static func run(_ arguments: [String], input: String? = nil, timeout: TimeInterval = 120) throws -> Result {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let inputPipe = Pipe()
    process.standardInput = inputPipe
    try process.run()
    if let input { inputPipe.fileHandleForWriting.write(Data(input.utf8)) }
    try inputPipe.fileHandleForWriting.close()
    let deadline = Date().addingTimeInterval(timeout)
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning { process.terminate() }
    process.waitUntilExit()
    return Result(status: process.terminationStatus, crashed: process.terminationReason == .uncaughtSignal, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
  }
}
