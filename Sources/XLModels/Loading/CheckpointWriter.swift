import Foundation
import XLFormats
import XLTensors
import XLTokenizer

/// Writes a model as a Hugging Face folder: `config.json`, `model.safetensors`,
/// `tokenizer.json`, `tokenizer_config.json` (with the chat template) and
/// `generation_config.json`.
///
/// Every file is written under a temporary name and renamed into place, so an interrupted
/// write never leaves a half-written file under a final name.
public enum CheckpointWriter {
  public static func write(
    configuration: ModelConfiguration, tensors: [(name: String, tensor: Tensor)], dtype: SafetensorsDType,
    tokenizer: BPETokenizer, chatTemplate: ChatTemplate?, to folder: URL
  ) throws {
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try SafetensorsWriter.write(tensors, dtype: dtype, metadata: ["format": "pt"], to: folder.appendingPathComponent("model.safetensors"))

    var config = configuration.configJSON()
    config["torch_dtype"] = ["f32": "float32", "bf16": "bfloat16", "f16": "float16"][dtype.rawValue.lowercased()] ?? "float32"
    try writeJSON(config, to: folder.appendingPathComponent("config.json"))

    try atomicWrite(tokenizer.tokenizerJSON(), to: folder.appendingPathComponent("tokenizer.json"))

    var tokenizerConfig: [String: Any] = ["tokenizer_class": "GPT2Tokenizer", "add_bos_token": false, "model_max_length": configuration.maxPositionEmbeddings]
    if let template = chatTemplate { tokenizerConfig["chat_template"] = template.source }
    if let id = tokenizer.bosTokenID, let token = tokenizer.token(for: id) { tokenizerConfig["bos_token"] = token }
    if let id = tokenizer.eosTokenID, let token = tokenizer.token(for: id) { tokenizerConfig["eos_token"] = token }
    try writeJSON(tokenizerConfig, to: folder.appendingPathComponent("tokenizer_config.json"))

    var generation: [String: Any] = [:]
    if let bos = configuration.bosTokenID { generation["bos_token_id"] = bos }
    let eos = configuration.eosTokenIDs
    if eos.count == 1 { generation["eos_token_id"] = eos[0] } else if !eos.isEmpty { generation["eos_token_id"] = eos }
    try writeJSON(generation, to: folder.appendingPathComponent("generation_config.json"))
  }

  static func writeJSON(_ object: Any, to url: URL) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    try atomicWrite(data + Data("\n".utf8), to: url)
  }

  /// Writes `data` to a temporary file beside `url` and renames it over `url`.
  public static func atomicWrite(_ data: Data, to url: URL) throws {
    let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    try data.write(to: temporary)
    if rename(temporary.path, url.path) != 0 {
      let code = errno
      try? FileManager.default.removeItem(at: temporary)
      throw ModelError.unsupportedModel(path: url.path, reason: "could not be written: \(String(cString: strerror(code)))")
    }
  }
}
