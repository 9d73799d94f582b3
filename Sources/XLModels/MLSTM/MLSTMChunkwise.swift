import Foundation
import XLTensors

extension MLSTMCell {
  /// Computes h (B, NH, S, DV) in chunkwise form for any S ≥ 1, starting from `state` (zero or
  /// not) and leaving the state after the last token in `state`.
  ///
  /// Each chunk of `chunkSize` tokens gets its outputs from the state at the chunk's start
  /// (inter-chunk part) plus a causal L × L product inside the chunk (intra-chunk part), then
  /// advances the state over the whole chunk at once. A final partial chunk of L < chunkSize
  /// tokens runs the same formulas with L rows, so the final state equals S recurrent steps
  /// (padding with zero tokens would leave a wrong state).
  public static func chunkwise(
    q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, state: inout MLSTMState,
    chunkSize: Int = 64
  ) -> Tensor {
    precondition(chunkSize >= 1, "chunk size must be positive, got \(chunkSize)")
    let dims = Dimensions(q: q, k: k, v: v, i: i, f: f)
    dims.checkState(state)
    var h = [Float](repeating: 0, count: dims.heads * dims.sequence * dims.valueDim)
    var workspace = ChunkWorkspace(chunkSize: min(chunkSize, max(dims.sequence, 1)),
                                   keyDim: dims.keyDim)
    state.withMutableBuffers { cState, nState, mState in
      q.data.withUnsafeBufferPointer { qBuffer in
      k.data.withUnsafeBufferPointer { kBuffer in
      v.data.withUnsafeBufferPointer { vBuffer in
      i.data.withUnsafeBufferPointer { iBuffer in
      f.data.withUnsafeBufferPointer { fBuffer in
      h.withUnsafeMutableBufferPointer { hBuffer in
        let (s, dqk, dv) = (dims.sequence, dims.keyDim, dims.valueDim)
        for head in 0..<dims.heads {
          var start = 0
          while start < s {
            let length = min(chunkSize, s - start)
            let row = head * s + start
            workspace.runChunk(
              q: qBuffer.baseAddress! + row * dqk, k: kBuffer.baseAddress! + row * dqk,
              v: vBuffer.baseAddress! + row * dv, i: iBuffer.baseAddress! + row,
              f: fBuffer.baseAddress! + row, length: length, keyDim: dqk, valueDim: dv,
              c: cState + head * dqk * dv, n: nState + head * dqk, m: mState + head,
              h: hBuffer.baseAddress! + row * dv)
            start += length
          }
        }
      }}}}}}
    }
    return Tensor(shape: [dims.batch, dims.numHeads, dims.sequence, dims.valueDim], data: h)
  }
}

/// Scratch buffers for one chunk, reused across chunks and heads.
struct ChunkWorkspace {
  /// In-chunk cumulative log forget gate b_t = Σ_{r≤t} logσ(f_r).
  var cumulativeLogForget: [Float]
  /// Combined stabilizer per row, max(b_t + m0, max_s (b_t − b_s + i_s)).
  var rowMax: [Float]
  /// q̃ · n0 per row, then the full normalizer sum.
  var rowDenominator: [Float]
  /// L × L scores, then the gated intra-chunk mixing matrix.
  var scores: [Float]
  /// Keys scaled by their weight in the state update (L × DQK).
  var gatedKeys: [Float]

  init(chunkSize: Int, keyDim: Int) {
    cumulativeLogForget = [Float](repeating: 0, count: chunkSize)
    rowMax = cumulativeLogForget
    rowDenominator = cumulativeLogForget
    scores = [Float](repeating: 0, count: chunkSize * chunkSize)
    gatedKeys = [Float](repeating: 0, count: chunkSize * keyDim)
  }

  /// Runs one chunk of `length` tokens of one head: writes h (length × DV) and advances
  /// c (DQK × DV), n (DQK) and m in place.
  ///
  /// Shapes: q, k (length × DQK); v, h (length × DV); i, f (length). Rows are contiguous.
  mutating func runChunk(
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
    i: UnsafePointer<Float>, f: UnsafePointer<Float>, length: Int, keyDim: Int, valueDim: Int,
    c: UnsafeMutablePointer<Float>, n: UnsafeMutablePointer<Float>,
    m: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>
  ) {
    let scale = 1 / Float(keyDim).squareRoot()
    let mStart = m.pointee
    cumulativeLogForget.withUnsafeMutableBufferPointer { cumulativeBuffer in
    rowMax.withUnsafeMutableBufferPointer { rowMaxBuffer in
    rowDenominator.withUnsafeMutableBufferPointer { denominatorBuffer in
    scores.withUnsafeMutableBufferPointer { scoreBuffer in
    gatedKeys.withUnsafeMutableBufferPointer { gatedBuffer in
      let cumulative = cumulativeBuffer.baseAddress!
      let combinedMax = rowMaxBuffer.baseAddress!
      let denominator = denominatorBuffer.baseAddress!
      let score = scoreBuffer.baseAddress!
      let gated = gatedBuffer.baseAddress!

      var running: Float = 0
      for t in 0..<length {
        running += MLSTMCell.logSigmoid(f[t])
        cumulative[t] = running
      }

      // Inter-chunk part: h_t = exp(b_t + m0 − m_t) · q̃_t C0, normalizer q̃_t · n0 likewise.
      BLAS.gemm(
        transposeA: false, transposeB: false, m: length, n: valueDim, k: keyDim, alpha: scale,
        a: q, lda: keyDim, b: c, ldb: valueDim, c: h, ldc: valueDim)
      BLAS.gemm(
        transposeA: false, transposeB: true, m: length, n: length, k: keyDim, alpha: scale,
        a: q, lda: keyDim, b: k, ldb: keyDim, c: score, ldc: length)
      for t in 0..<length {
        let bt = cumulative[t]
        var largest = bt + mStart
        for s in 0...t { largest = max(largest, bt - cumulative[s] + i[s]) }
        combinedMax[t] = largest
        let interWeight = exp(bt + mStart - largest)
        let qRow = q + t * keyDim
        var qn: Float = 0
        for index in 0..<keyDim { qn += qRow[index] * n[index] }
        let hRow = h + t * valueDim
        for index in 0..<valueDim { hRow[index] *= interWeight }

        // Intra-chunk part: M_ts = (q̃_t · k_s) exp(b_t − b_s + i_s − m_t) for s ≤ t.
        var sum = qn * scale * interWeight
        let scoreRow = score + t * length
        for s in 0...t {
          let weighted = scoreRow[s] * exp(bt - cumulative[s] + i[s] - largest)
          scoreRow[s] = weighted
          sum += weighted
        }
        for s in (t + 1)..<length { scoreRow[s] = 0 }
        denominator[t] = sum
      }
      BLAS.gemm(
        transposeA: false, transposeB: false, m: length, n: valueDim, k: length,
        a: score, lda: length, b: v, ldb: valueDim, beta: 1, c: h, ldc: valueDim)
      for t in 0..<length {
        let inverse = 1 / (max(abs(denominator[t]), exp(-combinedMax[t])) + MLSTMCell.eps)
        let hRow = h + t * valueDim
        for index in 0..<valueDim { hRow[index] *= inverse }
      }

      // State update over the chunk: a_s = b_L − b_s + i_s,
      // m' = max(b_L + m0, max_s a_s), C' = exp(b_L + m0 − m') C0 + Σ_s exp(a_s − m') k_s v_sᵀ.
      let total = cumulative[length - 1]
      var mNext = total + mStart
      for s in 0..<length { mNext = max(mNext, total - cumulative[s] + i[s]) }
      let carry = exp(total + mStart - mNext)
      for index in 0..<keyDim { n[index] *= carry }
      for s in 0..<length {
        let weight = exp(total - cumulative[s] + i[s] - mNext)
        let keyRow = k + s * keyDim
        let gatedRow = gated + s * keyDim
        for index in 0..<keyDim {
          let value = keyRow[index] * weight
          gatedRow[index] = value
          n[index] += value
        }
      }
      BLAS.gemm(
        transposeA: true, transposeB: false, m: keyDim, n: valueDim, k: length,
        a: gated, lda: keyDim, b: v, ldb: valueDim, beta: carry, c: c, ldc: valueDim)
      m.pointee = mNext
    }}}}}
  }
}
