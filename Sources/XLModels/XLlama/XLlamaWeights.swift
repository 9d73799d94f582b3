import Foundation
import XLTensors

/// Checkpoint names of the xLlama student, as the xLlama release's PyTorch code names them.
///
/// Per layer `model.layers.N.`; `self_attn` is the mLSTM mixer that replaced attention.
public enum XLlamaParameterNames {
  public static let embedding = "model.embed_tokens.weight"
  public static let finalNorm = "model.norm.weight"
  public static let outputProjection = "lm_head.weight"

  public static func layer(_ index: Int) -> String { "model.layers.\(index)." }

  /// Every parameter name with its shape, in checkpoint order.
  public static func all(for c: ModelConfiguration) -> [(name: String, shape: [Int])] {
    let d = c.hiddenSize
    let queryWidth = c.headCount * c.headDim
    let keyWidth = c.keyValueHeadCount * c.headDim
    var result: [(String, [Int])] = [(embedding, [c.vocabularySize, d])]
    for index in 0..<c.layerCount {
      let p = layer(index)
      result += [
        (p + "input_layernorm.weight", [d]),
        (p + "self_attn.q.weight", [queryWidth, d]),
        (p + "self_attn.k.weight", [keyWidth, d]),
        (p + "self_attn.v.weight", [keyWidth, d]),
        (p + "self_attn.ogate_preact.weight", [queryWidth, d]),
        (p + "self_attn.igate_preact.weight", [c.headCount, d]),
        (p + "self_attn.igate_preact.bias", [c.headCount]),
        (p + "self_attn.fgate_preact.weight", [c.headCount, d]),
        (p + "self_attn.fgate_preact.bias", [c.headCount]),
        (p + "self_attn.multihead_norm.weight", [queryWidth]),
        (p + "self_attn.out_proj.weight", [d, queryWidth]),
        (p + "post_attention_layernorm.weight", [d]),
        (p + "mlp.gate_proj.weight", [c.intermediateSize, d]),
        (p + "mlp.up_proj.weight", [c.intermediateSize, d]),
        (p + "mlp.down_proj.weight", [d, c.intermediateSize]),
      ]
    }
    result += [(finalNorm, [d]), (outputProjection, [c.vocabularySize, d])]
    return result
  }
}

/// One student layer's weights, with the projections that read the same input fused into one
/// matrix so that prefill runs one product and decode streams the weights once. Matrices keep
/// the checkpoint's precision (bfloat16 or float32); vectors are float32.
struct XLlamaLayerWeights {
  let inputNorm: [Float]  // (D)
  /// Rows: q (NH·DH), k (NKV·DH), v (NKV·DH), output gate (NH·DH), input gate (NH),
  /// forget gate (NH); shape (P, D).
  let mixerInput: WeightMatrix
  /// Input and forget gate biases, (2·NH).
  let gateBiases: [Float]
  let headNorm: [Float]  // (NH·DH)
  let outputProjection: WeightMatrix  // (D, NH·DH)
  let postAttentionNorm: [Float]  // (D)
  /// Rows: gate (I) then up (I); shape (2·I, D).
  let mlpInput: WeightMatrix
  let downProjection: WeightMatrix  // (D, I)

  init(reader: WeightReader, layer: Int, configuration c: ModelConfiguration) throws {
    let p = XLlamaParameterNames.layer(layer)
    let d = c.hiddenSize
    let queryWidth = c.headCount * c.headDim
    let keyWidth = c.keyValueHeadCount * c.headDim
    inputNorm = try reader.read(p + "input_layernorm.weight", shape: [d])
    mixerInput = WeightMatrix.stacking([
      try reader.readMatrix(p + "self_attn.q.weight", shape: [queryWidth, d]),
      try reader.readMatrix(p + "self_attn.k.weight", shape: [keyWidth, d]),
      try reader.readMatrix(p + "self_attn.v.weight", shape: [keyWidth, d]),
      try reader.readMatrix(p + "self_attn.ogate_preact.weight", shape: [queryWidth, d]),
      try reader.readMatrix(p + "self_attn.igate_preact.weight", shape: [c.headCount, d]),
      try reader.readMatrix(p + "self_attn.fgate_preact.weight", shape: [c.headCount, d]),
    ])
    gateBiases =
      try reader.read(p + "self_attn.igate_preact.bias", shape: [c.headCount])
      + reader.read(p + "self_attn.fgate_preact.bias", shape: [c.headCount])
    headNorm = try reader.read(p + "self_attn.multihead_norm.weight", shape: [queryWidth])
    outputProjection = try reader.readMatrix(p + "self_attn.out_proj.weight", shape: [d, queryWidth])
    postAttentionNorm = try reader.read(p + "post_attention_layernorm.weight", shape: [d])
    mlpInput = WeightMatrix.stacking([
      try reader.readMatrix(p + "mlp.gate_proj.weight", shape: [c.intermediateSize, d]),
      try reader.readMatrix(p + "mlp.up_proj.weight", shape: [c.intermediateSize, d]),
    ])
    downProjection = try reader.readMatrix(p + "mlp.down_proj.weight", shape: [d, c.intermediateSize])
  }
}
