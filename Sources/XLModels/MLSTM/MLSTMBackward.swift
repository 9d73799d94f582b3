import Foundation
import XLTensors

extension MLSTMCell {
  /// Computes the gradients of `sum(h · dh)` through `parallel(q:k:v:i:f:)` as PyTorch autograd
  /// gives them for the official parallel kernel, where the row maximum m routes its gradient
  /// to its argmax. `dh` has the shape of h, (B, NH, S, DV).
  ///
  /// Safe where exp(−m) overflows (for example i = −100): the normalizer branch's gradient is
  /// computed as `g / (1 + eps · exp(m))` instead of `g · exp(−m) / (exp(−m) + eps)`, which
  /// would be ∞ / ∞ = NaN.
  public static func parallelBackward(
    q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, dh: Tensor
  ) -> (dq: Tensor, dk: Tensor, dv: Tensor, di: Tensor, df: Tensor) {
    let dims = Dimensions(q: q, k: k, v: v, i: i, f: f)
    precondition(dh.shape == v.shape, "dh shape \(dh.shape) differs from h shape \(v.shape)")
    let (s, dv) = (dims.sequence, dims.valueDim)
    var gradients = Accumulated(dims: dims, withValues: true)
    var forward = ParallelHeadForward(sequence: s)
    var dMixing = [Float](repeating: 0, count: s * s)
    for head in 0..<dims.heads {
      forward.compute(head: head, dims: dims, q: q, k: k, i: i, f: f)
      v.data.withUnsafeBufferPointer { vBuffer in
      dh.data.withUnsafeBufferPointer { dhBuffer in
      dMixing.withUnsafeMutableBufferPointer { dMixingBuffer in
      forward.mixing.withUnsafeBufferPointer { mixingBuffer in
      gradients.dv.withUnsafeMutableBufferPointer { dvBuffer in
        let offset = head * s * dv
        // h = Cmix V: dCmix = dH Vᵀ, dV = Cmixᵀ dH.
        BLAS.gemm(
          transposeA: false, transposeB: true, m: s, n: s, k: dv,
          a: dhBuffer.baseAddress! + offset, lda: dv, b: vBuffer.baseAddress! + offset, ldb: dv,
          c: dMixingBuffer.baseAddress!, ldc: s)
        BLAS.gemm(
          transposeA: true, transposeB: false, m: s, n: dv, k: s,
          a: mixingBuffer.baseAddress!, lda: s, b: dhBuffer.baseAddress! + offset, ldb: dv,
          c: dvBuffer.baseAddress! + offset, ldc: dv)
      }}}}}
      backwardFromMixing(head: head, dims: dims, forward: forward, dMixing: &dMixing,
                         q: q, k: k, f: f, into: &gradients)
    }
    let qkShape = [dims.batch, dims.numHeads, s, dims.keyDim]
    let gateShape = [dims.batch, dims.numHeads, s]
    return (
      Tensor(shape: qkShape, data: gradients.dq), Tensor(shape: qkShape, data: gradients.dk),
      Tensor(shape: [dims.batch, dims.numHeads, s, dv], data: gradients.dv),
      Tensor(shape: gateShape, data: gradients.di), Tensor(shape: gateShape, data: gradients.df))
  }

  /// Computes the gradients of `sum(Cmix · dMixing)` through `mixingMatrix(q:k:i:f:)` with
  /// respect to q, k, i and f. `dMixing` is (B, NH, S, S), and its entries above the diagonal
  /// are ignored because Cmix is zero there.
  public static func mixingMatrixBackward(
    q: Tensor, k: Tensor, i: Tensor, f: Tensor, dMixing: Tensor
  ) -> (dq: Tensor, dk: Tensor, di: Tensor, df: Tensor) {
    let dims = Dimensions(q: q, k: k, v: nil, i: i, f: f)
    let s = dims.sequence
    precondition(dMixing.shape == [dims.batch, dims.numHeads, s, s],
                 "dMixing must be (B, NH, S, S), got \(dMixing.shape)")
    var gradients = Accumulated(dims: dims, withValues: false)
    var forward = ParallelHeadForward(sequence: s)
    for head in 0..<dims.heads {
      forward.compute(head: head, dims: dims, q: q, k: k, i: i, f: f)
      var headGradient = Array(dMixing.data[(head * s * s)..<((head + 1) * s * s)])
      backwardFromMixing(head: head, dims: dims, forward: forward, dMixing: &headGradient,
                         q: q, k: k, f: f, into: &gradients)
    }
    let qkShape = [dims.batch, dims.numHeads, s, dims.keyDim]
    let gateShape = [dims.batch, dims.numHeads, s]
    return (
      Tensor(shape: qkShape, data: gradients.dq), Tensor(shape: qkShape, data: gradients.dk),
      Tensor(shape: gateShape, data: gradients.di), Tensor(shape: gateShape, data: gradients.df))
  }

  /// Gradient buffers for all heads.
  struct Accumulated {
    var dq, dk, dv, di, df: [Float]

    init(dims: Dimensions, withValues: Bool) {
      let qkCount = dims.heads * dims.sequence * dims.keyDim
      dq = [Float](repeating: 0, count: qkCount)
      dk = dq
      dv = [Float](repeating: 0, count: withValues ? dims.heads * dims.sequence * dims.valueDim : 0)
      di = [Float](repeating: 0, count: dims.heads * dims.sequence)
      df = di
    }
  }

  /// Backpropagates one head's dCmix (S × S, overwritten as scratch) to q, k, i and f.
  static func backwardFromMixing(
    head: Int, dims: Dimensions, forward: ParallelHeadForward, dMixing: inout [Float],
    q: Tensor, k: Tensor, f: Tensor, into gradients: inout Accumulated
  ) {
    let s = dims.sequence
    let dqk = dims.keyDim
    let scale = 1 / Float(dqk).squareRoot()
    var logDecayGradient = [Float](repeating: 0, count: s * s)

    // Per row t, turn dCmix into dScores (in place) and dlogD.
    dMixing.withUnsafeMutableBufferPointer { gradientBuffer in
    logDecayGradient.withUnsafeMutableBufferPointer { logDecayBuffer in
      for t in 0..<s {
        let gradientRow = gradientBuffer.baseAddress! + t * s
        let logDecayRow = logDecayBuffer.baseAddress! + t * s
        let denominator = forward.normalizer[t] + eps
        // Cmix = C̃ / (N + eps): dC̃ = dCmix / (N + eps) and dN = −Σ dCmix · Cmix / (N + eps).
        var mixingDot: Float = 0
        for column in 0...t { mixingDot += gradientRow[column] * forward.mixing[t * s + column] }
        var rowSumGradient: Float = 0
        var rowMaxGradient: Float = 0
        if forward.sumBranch[t] {
          // N = |Σ C̃|: every C̃ entry of the row gets dN · sign(Σ C̃).
          let sign: Float = forward.rowSum[t] > 0 ? 1 : (forward.rowSum[t] < 0 ? -1 : 0)
          rowSumGradient = -mixingDot / denominator * sign
        } else {
          // N = exp(−m): dm = dN · (−exp(−m)) = mixingDot · exp(−m) / (exp(−m) + eps),
          // written so that exp(−m) = ∞ gives 1 instead of ∞ / ∞.
          rowMaxGradient = mixingDot / (1 + eps * exp(forward.rowMax[t]))
        }
        for column in 0...t {
          let index = t * s + column
          let tildeGradient = gradientRow[column] / denominator + rowSumGradient
          // C̃ = scores · exp(logD − m).
          let decayGradient = tildeGradient * forward.scores[index]
          let logGradient = decayGradient * forward.decay[index]
          logDecayRow[column] = logGradient
          rowMaxGradient -= logGradient
          gradientRow[column] = tildeGradient * forward.decay[index]
        }
        for column in (t + 1)..<s { gradientRow[column] = 0 }
        // m_t = max_s logD_ts sends its gradient to the argmax.
        logDecayRow[forward.rowArgMax[t]] += rowMaxGradient
      }
    }}

    // logD_ts = Σ_{r=s+1..t} logσ(f_r) + i_s: di_s sums column s, dlogσ(f_r) sums every
    // entry with s < r ≤ t.
    let gateOffset = head * s
    var logForgetGradient = [Float](repeating: 0, count: s)
    for t in 0..<s {
      var prefix: Float = 0
      for column in 0...t {
        let value = logDecayGradient[t * s + column]
        gradients.di[gateOffset + column] += value
        if column > 0 { logForgetGradient[column] += prefix }
        prefix += value
      }
    }
    for t in 0..<s {
      // d logσ(x) / dx = σ(−x).
      let x = f.data[gateOffset + t]
      gradients.df[gateOffset + t] = logForgetGradient[t] / (1 + exp(x))
    }

    // scores = scale · Q Kᵀ: dQ = scale · dScores K, dK = scale · dScoresᵀ Q.
    dMixing.withUnsafeBufferPointer { scoreGradient in
    q.data.withUnsafeBufferPointer { qBuffer in
    k.data.withUnsafeBufferPointer { kBuffer in
    gradients.dq.withUnsafeMutableBufferPointer { dqBuffer in
    gradients.dk.withUnsafeMutableBufferPointer { dkBuffer in
      let offset = head * s * dqk
      BLAS.gemm(
        transposeA: false, transposeB: false, m: s, n: dqk, k: s, alpha: scale,
        a: scoreGradient.baseAddress!, lda: s, b: kBuffer.baseAddress! + offset, ldb: dqk,
        c: dqBuffer.baseAddress! + offset, ldc: dqk)
      BLAS.gemm(
        transposeA: true, transposeB: false, m: s, n: dqk, k: s, alpha: scale,
        a: scoreGradient.baseAddress!, lda: s, b: qBuffer.baseAddress! + offset, ldb: dqk,
        c: dkBuffer.baseAddress! + offset, ldc: dqk)
    }}}}}
  }
}
