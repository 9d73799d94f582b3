import Foundation
import XLFormats
import XLTensors
import XLTokenizer

/// A student's recurrent state saved to disk, so that a conversation resumes without
/// re-reading its history.
///
/// Stored as safetensors: tensors `layers.N.c` (1, NH, DH, DH), `layers.N.n` (1, NH, DH) and
/// `layers.N.m` (1, NH, 1) in float32, and metadata `format` = `xllama-state`, `version` = `1`,
/// `tokens` (the ids the state has read, as a JSON array, for repetition penalties and
/// inspection), `messages` (the chat so far as a JSON array of role/content objects, when the
/// state holds a chat) and the model shape it belongs to. Its size depends on the model only, never on
/// the context length.
public enum StateFile {
  /// Writes the state of `session`, which must be a student's, with the ids it has read and,
  /// for a chat, its messages.
  public static func write(session: any ModelSession, tokens: [Int], messages: [ChatMessage]? = nil, to url: URL) throws {
    guard let session = session as? XLlamaSession else {
      throw ModelError.invalidState(path: url.path, reason: "only an xLlama student has a fixed-size state to save; a teacher's KV cache is not saved")
    }
    var tensors: [(name: String, tensor: Tensor)] = []
    for (index, state) in session.states.enumerated() {
      tensors += [("layers.\(index).c", state.c), ("layers.\(index).n", state.n), ("layers.\(index).m", state.m)]
    }
    let c = session.model.configuration
    var metadata = [
      "format": "xllama-state", "version": "1",
      "tokens": "[" + tokens.map(String.init).joined(separator: ",") + "]",
      "token_count": "\(session.tokenCount)",
      "shape": shapeSignature(c),
    ]
    if let messages {
      let objects = messages.map { ["role": $0.role, "content": $0.content] }
      let data = try JSONSerialization.data(withJSONObject: objects, options: [.sortedKeys])
      metadata["messages"] = String(decoding: data, as: UTF8.self)
    }
    try SafetensorsWriter.write(tensors, dtype: .f32, metadata: metadata, to: url)
  }

  /// Checks before any work is done that `model` can save a state to `url`: the model is a
  /// student and the folder of `url` exists.
  public static func checkWritable(to url: URL, model: any LanguageModel) throws {
    guard model is XLlamaModel else {
      throw ModelError.invalidState(path: url.path, reason: "only an xLlama student has a fixed-size state to save; a teacher's KV cache is not saved")
    }
    var isFolder: ObjCBool = false
    let folder = url.deletingLastPathComponent()
    guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder), isFolder.boolValue else {
      throw ModelError.invalidState(path: url.path, reason: "folder \(folder.path) does not exist")
    }
  }

  /// Reads a state and opens a session of `model` that continues from it. `messages` is the
  /// saved chat, or nil when a chat did not save the state.
  public static func read(from url: URL, model: any LanguageModel) throws -> (session: any ModelSession, tokens: [Int], messages: [ChatMessage]?) {
    guard let student = model as? XLlamaModel else {
      throw ModelError.invalidState(path: url.path, reason: "states can only be loaded into an xLlama student")
    }
    let file = try SafetensorsFile(url: url)
    guard file.metadata["format"] == "xllama-state" else {
      throw ModelError.invalidState(path: url.path, reason: "is not an xllama state file (metadata 'format' is \(file.metadata["format"] ?? "missing"))")
    }
    let expected = shapeSignature(student.configuration)
    guard file.metadata["shape"] == expected else {
      throw ModelError.invalidState(path: url.path, reason: "belongs to a model of shape \(file.metadata["shape"] ?? "unknown"), this model is \(expected)")
    }
    guard let countText = file.metadata["token_count"], let count = Int(countText),
      let tokenData = file.metadata["tokens"]?.data(using: .utf8),
      let tokens = try? JSONSerialization.jsonObject(with: tokenData) as? [Int]
    else {
      throw ModelError.invalidState(path: url.path, reason: "metadata 'token_count' or 'tokens' is missing or malformed")
    }
    var states: [MLSTMState] = []
    for index in 0..<student.configuration.layerCount {
      do {
        states.append(try MLSTMState(
          c: file.tensor(named: "layers.\(index).c"), n: file.tensor(named: "layers.\(index).n"),
          m: file.tensor(named: "layers.\(index).m")))
      } catch {
        throw ModelError.invalidState(path: url.path, reason: "layer \(index): \(error)")
      }
    }
    var messages: [ChatMessage]? = nil
    if let text = file.metadata["messages"] {
      guard let objects = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: String]] else {
        throw ModelError.invalidState(path: url.path, reason: "metadata 'messages' is not a JSON array of role/content objects")
      }
      messages = objects.map { ChatMessage(role: $0["role"] ?? "", content: $0["content"] ?? "") }
    }
    return (try student.makeSession(states: states, tokenCount: count), tokens, messages)
  }

  static func shapeSignature(_ c: ModelConfiguration) -> String {
    "layers=\(c.layerCount),heads=\(c.headCount),head_dim=\(c.headDim)"
  }
}
