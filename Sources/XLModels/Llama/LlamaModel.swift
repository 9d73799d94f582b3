import Foundation
import XLTensors

/// The Llama teacher: a pre-norm decoder with grouped-query attention and rotary embeddings.
///
/// Follows Hugging Face transformers' `LlamaForCausalLM` (modeling_llama.py):
/// `x += o_proj(attn(rmsnorm(x)))`, `x += down(silu(gate(h)) · up(h))` with `h = rmsnorm(x)`,
/// rotary embeddings in the "rotate half" convention, a final RMSNorm and an `lm_head` that is
/// the embedding matrix when `tie_word_embeddings` is set. Matrices are in PyTorch's (out, in)
/// layout, bfloat16 when a safetensors checkpoint stores them so and float32 otherwise.
public final class LlamaModel: LanguageModel, @unchecked Sendable {
  public let configuration: ModelConfiguration
  let embedding: WeightMatrix  // (V, D)
  let layers: [LlamaLayerWeights]
  let finalNorm: [Float]  // (D)
  let outputProjection: WeightMatrix  // (V, D); the same storage as `embedding` when tied
  let rotary: RotaryEmbedding

  public var contextLimit: Int? { configuration.maxPositionEmbeddings }

  /// Loads the weights named as in Hugging Face checkpoints from `provider`, checking every
  /// shape against `configuration`.
  public init(configuration: ModelConfiguration, weights provider: TensorProvider, source: String) throws {
    try configuration.validate(source: source)
    self.configuration = configuration
    let reader = WeightReader(provider: provider, source: source)
    let c = configuration
    let d = c.hiddenSize
    embedding = try reader.readMatrix("model.embed_tokens.weight", shape: [c.vocabularySize, d])
    finalNorm = try reader.read("model.norm.weight", shape: [d])
    if reader.contains("lm_head.weight") {
      outputProjection = try reader.readMatrix("lm_head.weight", shape: [c.vocabularySize, d])
    } else if c.tieWordEmbeddings {
      outputProjection = embedding
    } else {
      throw ModelError.missingTensor(source: source, name: "lm_head.weight")
    }
    layers = try (0..<c.layerCount).map { try LlamaLayerWeights(reader: reader, layer: $0, configuration: c) }
    rotary = RotaryEmbedding(headDim: c.headDim, theta: c.ropeTheta)
  }

  public func makeSession() -> any ModelSession { LlamaSession(model: self) }

  public var decodeMatrices: [WeightMatrix] {
    layers.flatMap {
      [$0.queryProjection, $0.keyProjection, $0.valueProjection, $0.outputProjection, $0.gateProjection,
       $0.upProjection, $0.downProjection]
    } + [outputProjection]
  }
}

/// One decoder layer's weights.
struct LlamaLayerWeights {
  let inputNorm: [Float]  // (D)
  let queryProjection: WeightMatrix  // (NH·DH, D)
  let keyProjection: WeightMatrix  // (NKV·DH, D)
  let valueProjection: WeightMatrix  // (NKV·DH, D)
  let outputProjection: WeightMatrix  // (D, NH·DH)
  let postAttentionNorm: [Float]  // (D)
  let gateProjection: WeightMatrix  // (I, D)
  let upProjection: WeightMatrix  // (I, D)
  let downProjection: WeightMatrix  // (D, I)

  init(reader: WeightReader, layer: Int, configuration c: ModelConfiguration) throws {
    let prefix = "model.layers.\(layer)."
    let d = c.hiddenSize
    let queryWidth = c.headCount * c.headDim
    let keyWidth = c.keyValueHeadCount * c.headDim
    inputNorm = try reader.read(prefix + "input_layernorm.weight", shape: [d])
    queryProjection = try reader.readMatrix(prefix + "self_attn.q_proj.weight", shape: [queryWidth, d])
    keyProjection = try reader.readMatrix(prefix + "self_attn.k_proj.weight", shape: [keyWidth, d])
    valueProjection = try reader.readMatrix(prefix + "self_attn.v_proj.weight", shape: [keyWidth, d])
    outputProjection = try reader.readMatrix(prefix + "self_attn.o_proj.weight", shape: [d, queryWidth])
    postAttentionNorm = try reader.read(prefix + "post_attention_layernorm.weight", shape: [d])
    gateProjection = try reader.readMatrix(prefix + "mlp.gate_proj.weight", shape: [c.intermediateSize, d])
    upProjection = try reader.readMatrix(prefix + "mlp.up_proj.weight", shape: [c.intermediateSize, d])
    downProjection = try reader.readMatrix(prefix + "mlp.down_proj.weight", shape: [d, c.intermediateSize])
  }
}
