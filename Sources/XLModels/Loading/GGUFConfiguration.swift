import Foundation
import XLFormats
import XLTokenizer

/// Reads a model configuration and tokenizer from GGUF metadata (llama.cpp's key names).
enum GGUFConfiguration {
  static func configuration(from file: GGUFFile) throws -> ModelConfiguration {
    let source = file.url.path
    let architecture = file.metadata["general.architecture"]?.string ?? ""
    guard architecture == "llama" else {
      throw ModelError.unsupportedModel(path: source, reason: "general.architecture is '\(architecture)', expected 'llama'")
    }
    func integer(_ key: String) throws -> Int {
      guard let value = file.metadata[key]?.int else {
        throw ModelError.invalidConfiguration(source: source, key: key, reason: "is missing or not an integer")
      }
      return value
    }
    let hidden = try integer("llama.embedding_length")
    let heads = try integer("llama.attention.head_count")
    let vocabulary = file.metadata["llama.vocab_size"]?.int
      ?? file.metadata["tokenizer.ggml.tokens"]?.stringArray?.count ?? 0
    let hasOutput = file.tensorInfos.contains { $0.name == "output.weight" }
    var eos: [Int] = []
    if let id = file.metadata["tokenizer.ggml.eos_token_id"]?.int { eos.append(id) }
    let configuration = ModelConfiguration(
      modelType: "llama",
      hiddenSize: hidden,
      intermediateSize: try integer("llama.feed_forward_length"),
      layerCount: try integer("llama.block_count"),
      headCount: heads,
      keyValueHeadCount: file.metadata["llama.attention.head_count_kv"]?.int ?? heads,
      headDim: file.metadata["llama.attention.key_length"]?.int ?? file.metadata["llama.rope.dimension_count"]?.int,
      vocabularySize: vocabulary,
      rmsNormEps: Float(file.metadata["llama.attention.layer_norm_rms_epsilon"]?.double ?? 1e-5),
      ropeTheta: file.metadata["llama.rope.freq_base"]?.double ?? 10000,
      tieWordEmbeddings: !hasOutput,
      maxPositionEmbeddings: file.metadata["llama.context_length"]?.int ?? 2048,
      bosTokenID: file.metadata["tokenizer.ggml.bos_token_id"]?.int,
      eosTokenIDs: eos)
    try configuration.validate(source: source)
    return configuration
  }

  static func tokenizer(from file: GGUFFile) throws -> BPETokenizer {
    let source = file.url.path
    let model = file.metadata["tokenizer.ggml.model"]?.string ?? ""
    guard model == "gpt2" else {
      throw ModelError.unsupportedModel(path: source, reason: "tokenizer.ggml.model is '\(model)', only byte-level BPE ('gpt2') is supported")
    }
    guard let tokens = file.metadata["tokenizer.ggml.tokens"]?.stringArray else {
      throw ModelError.invalidConfiguration(source: source, key: "tokenizer.ggml.tokens", reason: "is missing")
    }
    guard let merges = file.metadata["tokenizer.ggml.merges"]?.stringArray else {
      throw ModelError.invalidConfiguration(source: source, key: "tokenizer.ggml.merges", reason: "is missing")
    }
    return try BPETokenizer(
      vocabulary: tokens, merges: merges,
      tokenTypes: file.metadata["tokenizer.ggml.token_type"]?.intArray,
      bosTokenID: file.metadata["tokenizer.ggml.bos_token_id"]?.int,
      eosTokenID: file.metadata["tokenizer.ggml.eos_token_id"]?.int,
      unknownTokenID: file.metadata["tokenizer.ggml.unknown_token_id"]?.int,
      preTokenizer: file.metadata["tokenizer.ggml.pre"]?.string ?? "smollm")
  }
}
