import Foundation
import XLTensors

/// The teacher's activations that MOHAWK distillation reads, for one batch of B rows of S tokens.
///
/// Matches `teacher(ids, output_hidden_states=True, output_attentions=True)` of transformers,
/// except that `hidden[L]` is the last layer's raw output (transformers returns it after the
/// final norm).
public struct LlamaTrace: Sendable {
  /// L + 1 tensors of shape (B, S, D): `hidden[n]` enters layer n, `hidden[n + 1]` leaves it.
  public var hidden: [Tensor]
  /// L tensors of shape (B, NH, S, S): causal softmax of `q·kᵀ / sqrt(DH)` after rotary
  /// embeddings, zero above the diagonal. Empty when the trace skipped them.
  public var attention: [Tensor]
  /// (B, S, V) logits after the final norm and `lm_head`; empty when the trace skipped them.
  public var logits: Tensor
}

extension LlamaModel {
  /// Runs the teacher over `rows` independent sequences of `length` tokens each (positions
  /// start at 0 in every row) and keeps every layer's input, output and attention map.
  ///
  /// `ids` is (B, S) row-major. Throws when an id is outside the vocabulary or S exceeds the
  /// context limit. Attention maps cost B·NH·S² floats per layer and logits a product with
  /// the (V, D) `lm_head`, so `includeAttention` and `includeLogits` can skip them.
  ///
  /// NOTE: its layer step repeats `LlamaSession`'s prefill (norm, projections, rotary,
  /// attention, MLP) for several rows without a cache and keeping the attention maps; a change
  /// to the teacher's arithmetic must be made in both, and the tiny-teacher fixture tests
  /// check both against transformers.
  public func trace(
    ids: [Int], rows: Int, length: Int, includeAttention: Bool = true, includeLogits: Bool = true
  ) throws -> LlamaTrace {
    let c = configuration
    guard ids.count == rows * length else {
      throw ModelError.invalidConfiguration(
        source: "trace", key: "ids", reason: "has \(ids.count) ids, expected rows × length = \(rows * length)")
    }
    if length > c.maxPositionEmbeddings {
      throw ModelError.contextOverflow(requested: length, limit: c.maxPositionEmbeddings)
    }
    for id in ids where id < 0 || id >= c.vocabularySize {
      throw ModelError.invalidToken(id: id, vocabularySize: c.vocabularySize)
    }

    let d = c.hiddenSize
    let tokens = rows * length
    var hidden = [Float](repeating: 0, count: tokens * d)
    hidden.withUnsafeMutableBufferPointer { buffer in
      for (row, id) in ids.enumerated() { embedding.row(id, into: buffer.baseAddress! + row * d) }
    }

    var states = [Tensor(shape: [rows, length, d], data: hidden)]
    var maps: [Tensor] = []
    let angles = rotary.angleTable(positions: length)
    for layer in 0..<c.layerCount {
      let map = traceLayer(
        layer, hidden: &hidden, rows: rows, length: length, keepAttention: includeAttention, angles: angles)
      if includeAttention { maps.append(map) }
      states.append(Tensor(shape: [rows, length, d], data: hidden))
    }

    guard includeLogits else { return LlamaTrace(hidden: states, attention: maps, logits: Tensor(zeros: [0])) }
    let logits = LogitsProjection.compute(
      hidden: hidden, rows: tokens, selection: .all, norm: finalNorm, eps: c.rmsNormEps,
      outputProjection: outputProjection, vocabularySize: c.vocabularySize)
    return LlamaTrace(hidden: states, attention: maps, logits: logits.reshaped([rows, length, c.vocabularySize]))
  }

  // hidden: (B·S, D), updated in place to the layer's output; returns the attention map
  // (B, NH, S, S) when `keepAttention`, else an empty tensor.
  // `angles` is the rotary table for positions 0..<S, shared by all layers.
  private func traceLayer(
    _ index: Int, hidden: inout [Float], rows: Int, length s: Int, keepAttention: Bool,
    angles: (cosines: [Float], sines: [Float])
  ) -> Tensor {
    let c = configuration
    let weights = layers[index]
    let d = c.hiddenSize
    let dh = c.headDim
    let nh = c.headCount
    let queryWidth = nh * dh
    let keyWidth = c.keyValueHeadCount * dh
    let tokens = rows * s

    var normed = [Float](repeating: 0, count: tokens * d)
    Kernels.rmsNorm(hidden, rows: tokens, dim: d, weight: weights.inputNorm, eps: c.rmsNormEps, into: &normed)
    var queries = [Float](repeating: 0, count: tokens * queryWidth)
    var keys = [Float](repeating: 0, count: tokens * keyWidth)
    var values = [Float](repeating: 0, count: tokens * keyWidth)
    weights.queryProjection.apply(normed, count: tokens, into: &queries)
    weights.keyProjection.apply(normed, count: tokens, into: &keys)
    weights.valueProjection.apply(normed, count: tokens, into: &values)
    queries.withUnsafeMutableBufferPointer { q in
    keys.withUnsafeMutableBufferPointer { k in
    angles.cosines.withUnsafeBufferPointer { cosines in
    angles.sines.withUnsafeBufferPointer { sines in
      let half = dh / 2
      for token in 0..<tokens {
        let (cosine, sine) = (cosines.baseAddress! + (token % s) * half, sines.baseAddress! + (token % s) * half)
        rotary.apply(q.baseAddress! + token * queryWidth, heads: nh, cosines: cosine, sines: sine)
        rotary.apply(k.baseAddress! + token * keyWidth, heads: c.keyValueHeadCount, cosines: cosine, sines: sine)
      }
    }}}}

    var attended = [Float](repeating: 0, count: tokens * queryWidth)
    var map = [Float](repeating: 0, count: keepAttention ? rows * nh * s * s : 0)
    var probabilities = [Float](repeating: 0, count: s * s)
    let scale = 1 / Float(dh).squareRoot()
    queries.withUnsafeBufferPointer { q in
    keys.withUnsafeBufferPointer { k in
    values.withUnsafeBufferPointer { v in
    attended.withUnsafeMutableBufferPointer { out in
    probabilities.withUnsafeMutableBufferPointer { p in
      for row in 0..<rows {
        for head in 0..<nh {
          let kvOffset = row * s * keyWidth + (head / c.groupSize) * dh
          let qOffset = row * s * queryWidth + head * dh
          BLAS.gemm(
            transposeA: false, transposeB: true, m: s, n: s, k: dh, alpha: scale,
            a: q.baseAddress! + qOffset, lda: queryWidth, b: k.baseAddress! + kvOffset, ldb: keyWidth,
            c: p.baseAddress!, ldc: s)
          for t in 0..<s {
            let scores = p.baseAddress! + t * s
            Kernels.softmax(scores, count: t + 1)
            for masked in (t + 1)..<s { scores[masked] = 0 }
          }
          BLAS.gemm(
            transposeA: false, transposeB: false, m: s, n: dh, k: s,
            a: p.baseAddress!, lda: s, b: v.baseAddress! + kvOffset, ldb: keyWidth,
            c: out.baseAddress! + qOffset, ldc: queryWidth)
          if keepAttention {
            let target = (row * nh + head) * s * s
            map.replaceSubrange(target..<(target + s * s), with: p)
          }
        }
      }
    }}}}}

    weights.outputProjection.apply(attended, count: tokens, into: &hidden, accumulate: true)
    Kernels.rmsNorm(hidden, rows: tokens, dim: d, weight: weights.postAttentionNorm, eps: c.rmsNormEps, into: &normed)
    let width = c.intermediateSize
    var gate = [Float](repeating: 0, count: tokens * width)
    var up = [Float](repeating: 0, count: tokens * width)
    weights.gateProjection.apply(normed, count: tokens, into: &gate)
    weights.upProjection.apply(normed, count: tokens, into: &up)
    Kernels.siluMultiply(gate: &gate, up: up, count: tokens * width)
    weights.downProjection.apply(gate, count: tokens, into: &hidden, accumulate: true)
    return keepAttention ? Tensor(shape: [rows, nh, s, s], data: map) : Tensor(zeros: [0])
  }
}
