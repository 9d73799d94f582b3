import Foundation
import XLTensors

/// A teacher's running sequence: the key/value cache of every layer.
///
/// The cache of one layer stores keys and values per key/value head as (NKV, capacity, DH), so
/// that one head's history is a contiguous (T, DH) matrix for the attention products. Capacity
/// doubles when it runs out, up to the model's context limit.
final class LlamaSession: ModelSession {
  let model: LlamaModel
  private(set) var tokenCount = 0
  private var capacity = 0
  private var keys: [[Float]]
  private var values: [[Float]]

  init(model: LlamaModel) {
    self.model = model
    keys = Array(repeating: [], count: model.configuration.layerCount)
    values = Array(repeating: [], count: model.configuration.layerCount)
  }

  func fork() -> any ModelSession {
    let copy = LlamaSession(model: model)
    copy.tokenCount = tokenCount
    copy.capacity = capacity
    copy.keys = keys
    copy.values = values
    return copy
  }

  func append(_ tokens: [Int], logits selection: LogitSelection) throws -> Tensor {
    let c = model.configuration
    try validate(tokens, vocabularySize: c.vocabularySize)
    let total = tokenCount + tokens.count
    if total > c.maxPositionEmbeddings {
      throw ModelError.contextOverflow(requested: total, limit: c.maxPositionEmbeddings)
    }
    if tokens.isEmpty { return Tensor(zeros: [0, c.vocabularySize]) }
    reserve(total)

    let s = tokens.count
    let d = c.hiddenSize
    var hidden = [Float](repeating: 0, count: s * d)
    hidden.withUnsafeMutableBufferPointer { h in
      for (row, token) in tokens.enumerated() { model.embedding.row(token, into: h.baseAddress! + row * d) }
    }
    for layer in 0..<c.layerCount {
      forwardLayer(layer, hidden: &hidden, count: s)
    }
    tokenCount = total
    return LogitsProjection.compute(
      hidden: hidden, rows: s, selection: selection, norm: model.finalNorm,
      eps: c.rmsNormEps, outputProjection: model.outputProjection, vocabularySize: c.vocabularySize)
  }

  private func reserve(_ needed: Int) {
    guard needed > capacity else { return }
    let c = model.configuration
    let newCapacity = min(max(needed, capacity * 2, 64), c.maxPositionEmbeddings)
    let dh = c.headDim
    for layer in 0..<c.layerCount {
      var newKeys = [Float](repeating: 0, count: c.keyValueHeadCount * newCapacity * dh)
      var newValues = newKeys
      for head in 0..<c.keyValueHeadCount where tokenCount > 0 {
        let old = head * capacity * dh
        let new = head * newCapacity * dh
        let width = tokenCount * dh
        newKeys.replaceSubrange(new..<(new + width), with: keys[layer][old..<(old + width)])
        newValues.replaceSubrange(new..<(new + width), with: values[layer][old..<(old + width)])
      }
      keys[layer] = newKeys
      values[layer] = newValues
    }
    capacity = newCapacity
  }

  // hidden: (S, D), updated in place; the new tokens sit at positions tokenCount..<tokenCount+S.
  private func forwardLayer(_ index: Int, hidden: inout [Float], count s: Int) {
    let c = model.configuration
    let weights = model.layers[index]
    let d = c.hiddenSize
    let dh = c.headDim
    let nh = c.headCount
    let nkv = c.keyValueHeadCount
    let queryWidth = nh * dh
    let keyWidth = nkv * dh
    let start = tokenCount

    var normed = [Float](repeating: 0, count: s * d)
    Kernels.rmsNorm(hidden, rows: s, dim: d, weight: weights.inputNorm, eps: c.rmsNormEps, into: &normed)

    var queries = [Float](repeating: 0, count: s * queryWidth)
    var newKeys = [Float](repeating: 0, count: s * keyWidth)
    var newValues = [Float](repeating: 0, count: s * keyWidth)
    weights.queryProjection.apply(normed, count: s, into: &queries)
    weights.keyProjection.apply(normed, count: s, into: &newKeys)
    weights.valueProjection.apply(normed, count: s, into: &newValues)

    queries.withUnsafeMutableBufferPointer { q in
      newKeys.withUnsafeMutableBufferPointer { k in
        for row in 0..<s {
          model.rotary.apply(q.baseAddress! + row * queryWidth, heads: nh, position: start + row)
          model.rotary.apply(k.baseAddress! + row * keyWidth, heads: nkv, position: start + row)
        }
      }
    }

    // Store the new keys and values in the cache, (NKV, capacity, DH).
    for head in 0..<nkv {
      for row in 0..<s {
        let target = (head * capacity + start + row) * dh
        let origin = row * keyWidth + head * dh
        for j in 0..<dh {
          keys[index][target + j] = newKeys[origin + j]
          values[index][target + j] = newValues[origin + j]
        }
      }
    }

    var attended = [Float](repeating: 0, count: s * queryWidth)
    attend(layer: index, queries: queries, count: s, into: &attended)

    weights.outputProjection.apply(attended, count: s, into: &hidden, accumulate: true)

    Kernels.rmsNorm(hidden, rows: s, dim: d, weight: weights.postAttentionNorm, eps: c.rmsNormEps, into: &normed)
    let width = c.intermediateSize
    var gate = [Float](repeating: 0, count: s * width)
    var up = [Float](repeating: 0, count: s * width)
    weights.gateProjection.apply(normed, count: s, into: &gate)
    weights.upProjection.apply(normed, count: s, into: &up)
    Kernels.siluMultiply(gate: &gate, up: up, count: s * width)
    weights.downProjection.apply(gate, count: s, into: &hidden, accumulate: true)
  }

  // queries: (S, NH·DH) already rotated; output: (S, NH·DH).
  // Query head h reads key/value head h / (NH / NKV); row s sees cache positions 0...start+s.
  private func attend(layer: Int, queries: [Float], count s: Int, into output: inout [Float]) {
    let c = model.configuration
    let dh = c.headDim
    let queryWidth = c.headCount * dh
    let start = tokenCount
    let visible = start + s
    let scale = 1 / Float(dh).squareRoot()
    var scores = [Float](repeating: 0, count: s * visible)

    keys[layer].withUnsafeBufferPointer { keyCache in
      values[layer].withUnsafeBufferPointer { valueCache in
        queries.withUnsafeBufferPointer { q in
          scores.withUnsafeMutableBufferPointer { p in
            output.withUnsafeMutableBufferPointer { out in
              for head in 0..<c.headCount {
                let kvHead = head / c.groupSize
                let headKeys = keyCache.baseAddress! + kvHead * capacity * dh
                let headValues = valueCache.baseAddress! + kvHead * capacity * dh

                BLAS.gemm(
                  transposeA: false, transposeB: true, m: s, n: visible, k: dh, alpha: scale,
                  a: q.baseAddress! + head * dh, lda: queryWidth, b: headKeys, ldb: dh,
                  c: p.baseAddress!, ldc: visible)

                for row in 0..<s {
                  let rowScores = p.baseAddress! + row * visible
                  let seen = start + row + 1
                  Kernels.softmax(rowScores, count: seen)
                  for masked in seen..<visible { rowScores[masked] = 0 }
                }

                BLAS.gemm(
                  transposeA: false, transposeB: false, m: s, n: dh, k: visible,
                  a: p.baseAddress!, lda: visible, b: headValues, ldb: dh,
                  c: out.baseAddress! + head * dh, ldc: queryWidth)
              }
            }
          }
        }
      }
    }
  }
}

/// The final norm and `lm_head` product for the positions a caller reads.
enum LogitsProjection {
  // hidden: (S, D) → logits (rows selected, V).
  static func compute(
    hidden: [Float], rows s: Int, selection: LogitSelection, norm: [Float], eps: Float,
    outputProjection: WeightMatrix, vocabularySize v: Int
  ) -> Tensor {
    let d = norm.count
    let first: Int
    switch selection {
    case .none: return Tensor(zeros: [0, v])
    case .last: first = s - 1
    case .all: first = 0
    }
    let rows = s - first
    var normed = [Float](repeating: 0, count: rows * d)
    hidden.withUnsafeBufferPointer { h in
      Kernels.rmsNorm(h.baseAddress! + first * d, rows: rows, dim: d, weight: norm, eps: eps, into: &normed)
    }
    var logits = [Float](repeating: 0, count: rows * v)
    outputProjection.apply(normed, count: rows, into: &logits)
    return Tensor(shape: [rows, v], data: logits)
  }
}
