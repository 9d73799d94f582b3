import XLTensors

/// The recurrent state of the mLSTM cell for B × NH heads: matrix memory `c` (B, NH, DQK, DV),
/// normalizer `n` (B, NH, DQK) and log-space stabilizer `m` (B, NH).
///
/// The stored `c` and `n` are scaled by `exp(-m)`: the unstabilized memory is `c · exp(m)`.
/// A zero state (all three zero) is the state before the first token, as in the official
/// `mlstm_kernels` package.
public struct MLSTMState: Sendable, Equatable {
  /// Matrix memory, (B, NH, DQK, DV).
  public private(set) var c: Tensor
  /// Normalizer, (B, NH, DQK).
  public private(set) var n: Tensor
  /// Stabilizer, (B, NH).
  public private(set) var m: Tensor

  public var batch: Int { c.shape[0] }
  public var heads: Int { c.shape[1] }
  public var keyDim: Int { c.shape[2] }
  public var valueDim: Int { c.shape[3] }

  /// Creates the zero state, the state before the first token.
  public init(zeros batch: Int, heads: Int, keyDim: Int, valueDim: Int) {
    c = Tensor(zeros: [batch, heads, keyDim, valueDim])
    n = Tensor(zeros: [batch, heads, keyDim])
    m = Tensor(zeros: [batch, heads])
  }

  /// Creates a state from its three tensors, where `m` may have shape (B, NH) or (B, NH, 1).
  ///
  /// Throws `TensorError.shapeMismatch` when `n` or `m` does not fit the shape of `c`.
  public init(c: Tensor, n: Tensor, m: Tensor) throws {
    guard c.rank == 4 else {
      // -1 marks a dimension of any size: only the rank is wrong.
      throw TensorError.shapeMismatch(name: "mLSTM state c", expected: [-1, -1, -1, -1],
                                      found: c.shape)
    }
    let (batch, heads, keyDim) = (c.shape[0], c.shape[1], c.shape[2])
    guard n.shape == [batch, heads, keyDim] else {
      throw TensorError.shapeMismatch(name: "mLSTM state n", expected: [batch, heads, keyDim],
                                      found: n.shape)
    }
    guard m.shape == [batch, heads] || m.shape == [batch, heads, 1] else {
      throw TensorError.shapeMismatch(name: "mLSTM state m", expected: [batch, heads],
                                      found: m.shape)
    }
    self.c = c
    self.n = n
    self.m = m.reshaped([batch, heads])
  }

  /// Returns the number of floats in `flatValues` for a state of this size.
  public static func flatCount(batch: Int, heads: Int, keyDim: Int, valueDim: Int) -> Int {
    batch * heads * (keyDim * valueDim + keyDim + 1)
  }

  /// All values in one array for saving: `c`, then `n`, then `m`, each row-major.
  public var flatValues: [Float] { c.data + n.data + m.data }

  /// Reads a state back from the `flatValues` of a state of the given size.
  ///
  /// Throws `TensorError.shapeMismatch` when the array length does not match the size.
  public init(batch: Int, heads: Int, keyDim: Int, valueDim: Int, flatValues: [Float]) throws {
    let expected = Self.flatCount(batch: batch, heads: heads, keyDim: keyDim, valueDim: valueDim)
    guard flatValues.count == expected else {
      throw TensorError.shapeMismatch(name: "mLSTM state values", expected: [expected],
                                      found: [flatValues.count])
    }
    let cCount = batch * heads * keyDim * valueDim
    let nCount = batch * heads * keyDim
    c = Tensor(shape: [batch, heads, keyDim, valueDim], data: Array(flatValues[0..<cCount]))
    n = Tensor(shape: [batch, heads, keyDim], data: Array(flatValues[cCount..<(cCount + nCount)]))
    m = Tensor(shape: [batch, heads], data: Array(flatValues[(cCount + nCount)...]))
  }

  /// Gives `body` mutable access to the three buffers at once (cell kernels only).
  mutating func withMutableBuffers<R>(
    _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
             UnsafeMutablePointer<Float>) throws -> R
  ) rethrows -> R {
    try c.data.withUnsafeMutableBufferPointer { cBuffer in
      try n.data.withUnsafeMutableBufferPointer { nBuffer in
        try m.data.withUnsafeMutableBufferPointer { mBuffer in
          try body(cBuffer.baseAddress!, nBuffer.baseAddress!, mBuffer.baseAddress!)
        }
      }
    }
  }
}
