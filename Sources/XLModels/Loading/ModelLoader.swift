import Foundation
import XLFormats
import XLTensors
import XLTokenizer

/// A model ready to run: the network, its tokenizer and chat template, and where it came from.
public struct LoadedModel: @unchecked Sendable {
  public let model: any LanguageModel
  public let tokenizer: BPETokenizer
  /// The chat template the model ships, or nil when it has none.
  public let chatTemplate: ChatTemplate?
  public let configuration: ModelConfiguration
  /// The file or folder the model was loaded from.
  public let path: String
  /// `gguf` or `safetensors`.
  public let format: String

  /// Token ids that end a generation: EOS from the configuration and tokenizer, and the chat
  /// template's end-of-turn token.
  public var stopTokenIDs: Set<Int> {
    var ids = Set(configuration.eosTokenIDs)
    if let eos = tokenizer.eosTokenID { ids.insert(eos) }
    if let token = chatTemplate?.endOfTurnToken, let id = tokenizer.id(for: token) { ids.insert(id) }
    return ids
  }
}

/// Opens a GGUF file or a Hugging Face folder, teacher or student alike.
public enum ModelLoader {
  /// Loads the model at `path`: a `.gguf` file, or a folder with `config.json`, weights in
  /// `model.safetensors` (or shards listed in `model.safetensors.index.json`) and
  /// `tokenizer.json`. The network keeps copies of its weights, so the files are closed and
  /// unmapped on return. `open` gives the raw weights for inspection and linearization.
  public static func load(_ path: String) throws -> LoadedModel {
    let (configuration, weights, tokenizer, template, format) = try open(path)
    let model: any LanguageModel
    if configuration.isStudent {
      model = try XLlamaModel(configuration: configuration, weights: weights, source: path)
    } else {
      model = try LlamaModel(configuration: configuration, weights: weights, source: path)
    }
    AllocatorTuning.releaseFreeMemory()
    return LoadedModel(
      model: model, tokenizer: tokenizer, chatTemplate: template, configuration: configuration,
      path: path, format: format)
  }

  /// The configuration, weights, tokenizer and chat template at `path`, without building the
  /// network (for `inspect` and `linearize`).
  public static func open(_ path: String) throws -> (
    ModelConfiguration, any TensorProvider, BPETokenizer, ChatTemplate?, String
  ) {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
      throw ModelError.unsupportedModel(path: path, reason: "no such file or folder")
    }
    if isFolder.boolValue { return try openFolder(URL(fileURLWithPath: path)) }
    if path.hasSuffix(".safetensors") || path.hasSuffix(".json") {
      throw ModelError.unsupportedModel(
        path: path, reason: "is one file of a Hugging Face model; pass the folder that contains it and its config.json")
    }
    return try openGGUF(URL(fileURLWithPath: path))
  }

  static func openFolder(_ folder: URL) throws -> (ModelConfiguration, any TensorProvider, BPETokenizer, ChatTemplate?, String) {
    let path = folder.path
    let configURL = folder.appendingPathComponent("config.json")
    guard let configData = try? Data(contentsOf: configURL) else {
      throw ModelError.unsupportedModel(path: path, reason: "config.json is missing; expected a Hugging Face model folder or a .gguf file")
    }
    var configuration = try ModelConfiguration(configJSON: configData, source: configURL.path)
    let weights = try ShardedSafetensors.openFolder(folder)

    let tokenizerURL = folder.appendingPathComponent("tokenizer.json")
    guard FileManager.default.fileExists(atPath: tokenizerURL.path) else {
      throw ModelError.unsupportedModel(path: path, reason: "tokenizer.json is missing")
    }
    let tokenizer = try BPETokenizer(tokenizerJSON: tokenizerURL)
    var template: ChatTemplate? = nil
    let tokenizerConfigURL = folder.appendingPathComponent("tokenizer_config.json")
    if let data = try? Data(contentsOf: tokenizerConfigURL),
      let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      let text = json["chat_template"] as? String
    {
      template = try ChatTemplate(text, bosToken: json["bos_token"] as? String, eosToken: json["eos_token"] as? String)
    }
    let generationURL = folder.appendingPathComponent("generation_config.json")
    if let data = try? Data(contentsOf: generationURL),
      let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    {
      if let single = json["eos_token_id"] as? Int { configuration.eosTokenIDs = Array(Set(configuration.eosTokenIDs + [single])).sorted() }
      if let many = json["eos_token_id"] as? [Int] { configuration.eosTokenIDs = Array(Set(configuration.eosTokenIDs + many)).sorted() }
    }
    return (configuration, weights, tokenizer, template, "safetensors")
  }

  static func openGGUF(_ url: URL) throws -> (ModelConfiguration, any TensorProvider, BPETokenizer, ChatTemplate?, String) {
    let file = try GGUFFile(url: url)
    let configuration = try GGUFConfiguration.configuration(from: file)
    let weights = GGUFWeights(file: file)
    let tokenizer = try GGUFConfiguration.tokenizer(from: file)
    var template: ChatTemplate? = nil
    if let text = file.metadata["tokenizer.chat_template"]?.string {
      let bos = configuration.bosTokenID.flatMap { tokenizer.token(for: $0) }
      let eos = tokenizer.eosTokenID.flatMap { tokenizer.token(for: $0) }
      template = try ChatTemplate(text, bosToken: bos, eosToken: eos)
    }
    return (configuration, weights, tokenizer, template, "gguf")
  }
}
