import Foundation
import XLTensors

/// The mLSTM cell (Beck et al., "xLSTM", 2024) in the three forms of the official
/// `mlstm_kernels` package (version 2.0.6): parallel, chunkwise and recurrent.
///
/// Per head, with state C (DQK × DV), n (DQK) and m, and q̃ = q / sqrt(DQK):
///
///     m_t = max(logσ(f_t) + m_{t-1}, i_t)
///     f'  = exp(logσ(f_t) + m_{t-1} − m_t),   i' = exp(i_t − m_t)
///     C_t = f'·C_{t-1} + i'·k_t v_tᵀ,          n_t = f'·n_{t-1} + i'·k_t
///     h_t = (C_tᵀ q̃_t) / (max(|n_tᵀ q̃_t|, exp(−m_t)) + eps)
///
/// Inputs: q, k (B, NH, S, DQK); v (B, NH, S, DV); i, f (B, NH, S) gate pre-activations
/// (already soft-capped by the caller). All forms compute the same h up to float32 rounding.
/// The parallel form starts from the zero state, and its stabilizer is the row maximum of the
/// log decay matrix rather than the running m, which changes h only through the `eps` term.
public enum MLSTMCell {
  /// The normalizer's additive epsilon, as in the xLlama release.
  public static let eps: Float = 1e-6

  // MARK: Recurrent form

  /// One recurrent step (S = 1) that advances `state` and returns h (B, NH, 1, DV).
  public static func recurrentStep(
    q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, state: inout MLSTMState
  ) -> Tensor {
    let dims = Dimensions(q: q, k: k, v: v, i: i, f: f)
    precondition(dims.sequence == 1, "recurrentStep takes one token, got S = \(dims.sequence)")
    return recurrent(q: q, k: k, v: v, i: i, f: f, state: &state)
  }

  /// S recurrent steps from `state`, one token at a time: the simple reference path.
  /// Returns h (B, NH, S, DV) and leaves the state after the last token in `state`.
  public static func recurrent(
    q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, state: inout MLSTMState
  ) -> Tensor {
    let dims = Dimensions(q: q, k: k, v: v, i: i, f: f)
    dims.checkState(state)
    var h = [Float](repeating: 0, count: dims.heads * dims.sequence * dims.valueDim)
    state.withMutableBuffers { cState, nState, mState in
      q.data.withUnsafeBufferPointer { qBuffer in
      k.data.withUnsafeBufferPointer { kBuffer in
      v.data.withUnsafeBufferPointer { vBuffer in
      i.data.withUnsafeBufferPointer { iBuffer in
      f.data.withUnsafeBufferPointer { fBuffer in
      h.withUnsafeMutableBufferPointer { hBuffer in
        let (dqk, dv, s) = (dims.keyDim, dims.valueDim, dims.sequence)
        for head in 0..<dims.heads {
          for t in 0..<s {
            let row = head * s + t
            stepHead(
              q: qBuffer.baseAddress! + row * dqk, k: kBuffer.baseAddress! + row * dqk,
              v: vBuffer.baseAddress! + row * dv, i: iBuffer[row], f: fBuffer[row],
              c: cState + head * dqk * dv, n: nState + head * dqk, m: mState + head,
              keyDim: dqk, valueDim: dv, h: hBuffer.baseAddress! + row * dv)
          }
        }
      }}}}}}
    }
    return Tensor(shape: [dims.batch, dims.numHeads, dims.sequence, dims.valueDim], data: h)
  }

  /// Advances one head's state by one token and writes h (DV).
  ///
  /// Shapes: q, k (DQK); v, h (DV); c (DQK × DV row-major); n (DQK); m scalar.
  @inline(__always)
  static func stepHead(
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
    i: Float, f: Float, c: UnsafeMutablePointer<Float>, n: UnsafeMutablePointer<Float>,
    m: UnsafeMutablePointer<Float>, keyDim: Int, valueDim: Int, h: UnsafeMutablePointer<Float>
  ) {
    let logForget = logSigmoid(f)
    let mNew = max(logForget + m.pointee, i)
    let forgetAct = exp(logForget + m.pointee - mNew)
    let inputAct = exp(i - mNew)
    m.pointee = mNew
    let scale = 1 / Float(keyDim).squareRoot()

    for index in 0..<valueDim { h[index] = 0 }
    var qn: Float = 0
    for row in 0..<keyDim {
      let qScaled = q[row] * scale
      let kScaled = inputAct * k[row]
      n[row] = forgetAct * n[row] + kScaled
      qn += qScaled * n[row]
      let cRow = c + row * valueDim
      for column in 0..<valueDim {
        let updated = forgetAct * cRow[column] + kScaled * v[column]
        cRow[column] = updated
        h[column] += qScaled * updated
      }
    }
    let inverse = 1 / (max(abs(qn), exp(-mNew)) + eps)
    for index in 0..<valueDim { h[index] *= inverse }
  }

  /// logσ(x) = −log(1 + exp(−x)), without overflow for large |x|.
  @inline(__always)
  static func logSigmoid(_ x: Float) -> Float {
    min(x, 0) - log1p(exp(-abs(x)))
  }

  // MARK: Parallel form

  /// The stabilized parallel form from the zero state: h (B, NH, S, DV) = Cmix · v.
  public static func parallel(q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor) -> Tensor {
    let dims = Dimensions(q: q, k: k, v: v, i: i, f: f)
    let (s, dv) = (dims.sequence, dims.valueDim)
    var h = [Float](repeating: 0, count: dims.heads * s * dv)
    var forward = ParallelHeadForward(sequence: s)
    v.data.withUnsafeBufferPointer { vBuffer in
    h.withUnsafeMutableBufferPointer { hBuffer in
      for head in 0..<dims.heads {
        forward.compute(head: head, dims: dims, q: q, k: k, i: i, f: f)
        forward.mixing.withUnsafeBufferPointer { mixing in
          BLAS.gemm(
            transposeA: false, transposeB: false, m: s, n: dv, k: s,
            a: mixing.baseAddress!, lda: s, b: vBuffer.baseAddress! + head * s * dv, ldb: dv,
            c: hBuffer.baseAddress! + head * s * dv, ldc: dv)
        }
      }
    }}
    return Tensor(shape: [dims.batch, dims.numHeads, s, dv], data: h)
  }

  /// The parallel form's mixing matrix Cmix (B, NH, S, S), causal, with h = Cmix · v:
  /// `Cmix_ts = (q̃_t·k_s) exp(logD_ts − m_t) / (max(|Σ_s …|, exp(−m_t)) + eps)` where
  /// `logD_ts = Σ_{r=s+1..t} logσ(f_r) + i_s` for s ≤ t and `m_t = max_s logD_ts`.
  ///
  /// `v` is not needed; q and k are (B, NH, S, DQK) and i, f (B, NH, S).
  public static func mixingMatrix(q: Tensor, k: Tensor, i: Tensor, f: Tensor) -> Tensor {
    let dims = Dimensions(q: q, k: k, v: nil, i: i, f: f)
    let s = dims.sequence
    var result = [Float](repeating: 0, count: dims.heads * s * s)
    var forward = ParallelHeadForward(sequence: s)
    for head in 0..<dims.heads {
      forward.compute(head: head, dims: dims, q: q, k: k, i: i, f: f)
      result.replaceSubrange((head * s * s)..<((head + 1) * s * s), with: forward.mixing)
    }
    return Tensor(shape: [dims.batch, dims.numHeads, s, s], data: result)
  }
}

/// Checked sizes of one call's inputs.
struct Dimensions {
  var batch, numHeads, sequence, keyDim, valueDim: Int
  /// B × NH, the number of independent heads.
  var heads: Int { batch * numHeads }

  /// Checks the shapes: q, k (B, NH, S, DQK), v (B, NH, S, DV) when given, i, f (B, NH, S).
  init(q: Tensor, k: Tensor, v: Tensor?, i: Tensor, f: Tensor) {
    precondition(q.rank == 4, "q must be (B, NH, S, DQK), got \(q.shape)")
    batch = q.shape[0]
    numHeads = q.shape[1]
    sequence = q.shape[2]
    keyDim = q.shape[3]
    valueDim = v?.shape.last ?? keyDim
    precondition(k.shape == q.shape, "k shape \(k.shape) differs from q shape \(q.shape)")
    if let v {
      precondition(v.shape == [batch, numHeads, sequence, valueDim],
                   "v must be (B, NH, S, DV) = (\(batch), \(numHeads), \(sequence), DV), got \(v.shape)")
    }
    precondition(i.shape == [batch, numHeads, sequence], "i must be (B, NH, S), got \(i.shape)")
    precondition(f.shape == [batch, numHeads, sequence], "f must be (B, NH, S), got \(f.shape)")
  }

  func checkState(_ state: MLSTMState) {
    precondition(
      state.c.shape == [batch, numHeads, keyDim, valueDim],
      "state c \(state.c.shape) does not fit (B, NH, DQK, DV) = \([batch, numHeads, keyDim, valueDim])")
  }
}

/// One head's parallel-form forward quantities, kept for the backward pass.
///
/// Buffers are S × S row-major; only the lower triangle (s ≤ t) is meaningful, the rest is 0.
struct ParallelHeadForward {
  let sequence: Int
  /// logσ(f) per position.
  var logForget: [Float]
  /// Row maxima m_t of the log decay matrix.
  var rowMax: [Float]
  /// Column index of each row maximum.
  var rowArgMax: [Int]
  /// Stabilized decay exp(logD − m).
  var decay: [Float]
  /// Scaled scores q̃_t · k_s (full matrix).
  var scores: [Float]
  /// Unnormalized mixing matrix scores · decay.
  var mixingTilde: [Float]
  /// Row sums of `mixingTilde`.
  var rowSum: [Float]
  /// max(|rowSum|, exp(−m)) per row; may be +inf when m is very negative.
  var normalizer: [Float]
  /// Whether `normalizer` took the |rowSum| branch.
  var sumBranch: [Bool]
  /// The mixing matrix Cmix.
  var mixing: [Float]

  init(sequence: Int) {
    self.sequence = sequence
    let square = sequence * sequence
    logForget = [Float](repeating: 0, count: sequence)
    rowMax = logForget
    rowArgMax = [Int](repeating: 0, count: sequence)
    decay = [Float](repeating: 0, count: square)
    scores = decay
    mixingTilde = decay
    rowSum = logForget
    normalizer = logForget
    sumBranch = [Bool](repeating: false, count: sequence)
    mixing = decay
  }

  /// Computes every buffer for flat head index `head` (b · NH + h).
  mutating func compute(head: Int, dims: Dimensions, q: Tensor, k: Tensor, i: Tensor, f: Tensor) {
    let s = sequence
    let dqk = dims.keyDim
    let scale = 1 / Float(dqk).squareRoot()
    for t in 0..<s { logForget[t] = MLSTMCell.logSigmoid(f.data[head * s + t]) }

    q.data.withUnsafeBufferPointer { qBuffer in
    k.data.withUnsafeBufferPointer { kBuffer in
    scores.withUnsafeMutableBufferPointer { scoreBuffer in
      BLAS.gemm(
        transposeA: false, transposeB: true, m: s, n: s, k: dqk, alpha: scale,
        a: qBuffer.baseAddress! + head * s * dqk, lda: dqk,
        b: kBuffer.baseAddress! + head * s * dqk, ldb: dqk,
        c: scoreBuffer.baseAddress!, ldc: s)
    }}}

    i.data.withUnsafeBufferPointer { iBuffer in
    decay.withUnsafeMutableBufferPointer { decayBuffer in
    scores.withUnsafeBufferPointer { scoreBuffer in
    mixingTilde.withUnsafeMutableBufferPointer { tildeBuffer in
    mixing.withUnsafeMutableBufferPointer { mixingBuffer in
      let gates = iBuffer.baseAddress! + head * s
      for t in 0..<s {
        let decayRow = decayBuffer.baseAddress! + t * s
        // logD_ts = Σ_{r=s+1..t} logσ(f_r) + i_s, summed from the diagonal outwards
        // (the "stable forget" order of the official parallel kernel).
        var accumulated: Float = 0
        var largest = -Float.infinity
        var largestIndex = t
        var column = t
        while column >= 0 {
          let logDecay = accumulated + gates[column]
          decayRow[column] = logDecay
          if logDecay > largest {
            largest = logDecay
            largestIndex = column
          }
          accumulated += logForget[column]
          column -= 1
        }
        rowMax[t] = largest
        rowArgMax[t] = largestIndex

        let scoreRow = scoreBuffer.baseAddress! + t * s
        let tildeRow = tildeBuffer.baseAddress! + t * s
        var sum: Float = 0
        for column in 0...t {
          let value = exp(decayRow[column] - largest)
          decayRow[column] = value
          let tilde = scoreRow[column] * value
          tildeRow[column] = tilde
          sum += tilde
        }
        for column in (t + 1)..<s {
          decayRow[column] = 0
          tildeRow[column] = 0
        }
        let floor = exp(-largest)
        rowSum[t] = sum
        sumBranch[t] = abs(sum) >= floor
        normalizer[t] = max(abs(sum), floor)
        let inverse = 1 / (normalizer[t] + MLSTMCell.eps)
        let mixingRow = mixingBuffer.baseAddress! + t * s
        for column in 0..<s { mixingRow[column] = tildeRow[column] * inverse }
      }
    }}}}}
  }
}
