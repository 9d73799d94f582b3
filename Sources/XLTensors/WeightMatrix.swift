#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif
import CKernels

/// A model weight of shape (out, in) in PyTorch's `nn.Linear` layout, stored as float32 or as
/// bfloat16 bits, applied as `y = x · Wᵀ`.
///
/// Decoding one token streams every weight once, so its speed is bounded by memory bandwidth:
/// bfloat16 storage halves the bytes read. Products always accumulate in float32; a bfloat16
/// element `b` stands for the float32 with bit pattern `UInt32(b) << 16`.
public struct WeightMatrix: @unchecked Sendable {
  /// The elements, row-major (out, in), in buffers aligned to 64 bytes (see `AlignedElements`).
  public enum Storage: Sendable, Equatable {
    case float32(AlignedElements<Float>)
    case bfloat16(AlignedElements<UInt16>)
  }

  /// Output features (rows).
  public let rows: Int
  /// Input features (columns).
  public let columns: Int
  public let storage: Storage

  /// Threads a single-token product splits its rows over (the C thread pool of `CKernels`).
  /// `BLAS.setThreadCount` sets it.
  nonisolated(unsafe) public static var threadCount = 2

  /// Resizes the C thread pool to `threadCount` when the two differ. Callers run it before each
  /// pool task, because `threadCount` is a plain stored property that starts at 2 without
  /// ever creating the workers.
  @usableFromInline
  static func matchPoolThreads() {
    if xl_pool_threads() != Int32(threadCount) { xl_pool_set_threads(Int32(threadCount)) }
  }

  /// The float32 matrix-vector kernels: the C loop of `CKernels` (AVX-512 with prefetching
  /// where the processor has it), its portable C form, or OpenBLAS's `sgemv`.
  public enum Float32Kernel: Sendable { case vector, portable, blas }
  /// The float32 kernel `matvec` runs. `.vector` is the default because it measured faster
  /// than `sgemv` at every model shape (`bench --kernels`); `bench --kernels` switches it to
  /// compare.
  nonisolated(unsafe) public static var float32Kernel = Float32Kernel.vector

  /// The bfloat16 matrix-vector kernels: the fastest C loop of `CKernels` (the AVX-512 BF16
  /// dot-product loop where the processor has it), the AVX-512 loop that widens each element
  /// instead, or the portable C form.
  public enum BFloat16Kernel: Sendable { case vector, widening, portable }
  /// The bfloat16 kernel `matvec` runs; `bench --kernels` switches it to compare.
  nonisolated(unsafe) public static var bfloat16Kernel = BFloat16Kernel.vector

  public init(rows: Int, columns: Int, float32 values: [Float]) {
    precondition(rows >= 0 && columns >= 0 && values.count == rows * columns,
                 "\(values.count) elements do not fill (\(rows), \(columns))")
    self.rows = rows
    self.columns = columns
    storage = .float32(AlignedElements(values))
  }

  public init(rows: Int, columns: Int, bfloat16 bits: [UInt16]) {
    precondition(rows >= 0 && columns >= 0 && bits.count == rows * columns,
                 "\(bits.count) elements do not fill (\(rows), \(columns))")
    self.rows = rows
    self.columns = columns
    storage = .bfloat16(AlignedElements(bits))
  }

  /// Creates a float32 matrix from a rank-2 tensor.
  public init(_ tensor: Tensor) {
    precondition(tensor.rank == 2, "a weight matrix needs a rank-2 tensor, got shape \(tensor.shape)")
    self.init(rows: tensor.shape[0], columns: tensor.shape[1], float32: tensor.data)
  }

  public var isBFloat16: Bool {
    if case .bfloat16 = storage { return true }
    return false
  }

  /// Bytes the elements occupy (what one matrix-vector product streams).
  public var byteCount: Int { rows * columns * (isBFloat16 ? 2 : 4) }

  /// Reads the storage once, split over the threads as the products split, and returns its
  /// bytes summed as float32 values (a bfloat16 matrix with an odd element count leaves out its
  /// last element). This is the plain read that decode's products are compared with, and the
  /// sum itself means nothing.
  @discardableResult
  public func streamAllBytes() -> Float {
    switch storage {
    case .float32(let values):
      return values.withUnsafeBufferPointer { Kernels.parallelSum($0.baseAddress!, count: $0.count) }
    case .bfloat16(let bits):
      return bits.withUnsafeBufferPointer { b in
        UnsafeRawPointer(b.baseAddress!).withMemoryRebound(to: Float.self, capacity: b.count / 2) {
          Kernels.parallelSum($0, count: b.count / 2)
        }
      }
    }
  }

  /// Returns every element widened to float32, row-major.
  public func floatValues() -> [Float] {
    switch storage {
    case .float32(let values): return values.array
    case .bfloat16(let bits): return bits.withUnsafeBufferPointer { $0.map { Float(bitPattern: UInt32($0) << 16) } }
    }
  }

  /// Returns the matrix as a float32 tensor (out, in).
  public func tensor() -> Tensor { Tensor(shape: [rows, columns], data: floatValues()) }

  /// Writes row `index` (in elements, float32) to `output`; used for embedding lookups.
  public func row(_ index: Int, into output: UnsafeMutablePointer<Float>) {
    precondition(index >= 0 && index < rows, "row \(index) outside 0..<\(rows)")
    switch storage {
    case .float32(let values):
      values.withUnsafeBufferPointer { output.update(from: $0.baseAddress! + index * columns, count: columns) }
    case .bfloat16(let bits):
      bits.withUnsafeBufferPointer { b in
        let source = b.baseAddress! + index * columns
        for j in 0..<columns { output[j] = Float(bitPattern: UInt32(source[j]) << 16) }
      }
    }
  }

  /// The rows of `parts` one after another (all must have the same column count): bfloat16
  /// when every part is, float32 otherwise.
  public static func stacking(_ parts: [WeightMatrix]) -> WeightMatrix {
    precondition(!parts.isEmpty, "nothing to stack")
    let columns = parts[0].columns
    precondition(parts.allSatisfy { $0.columns == columns }, "stacked matrices differ in column count")
    let rows = parts.reduce(0) { $0 + $1.rows }
    if parts.allSatisfy(\.isBFloat16) {
      var bits: [UInt16] = []
      bits.reserveCapacity(rows * columns)
      for part in parts { if case .bfloat16(let b) = part.storage { b.withUnsafeBufferPointer { bits += $0 } } }
      return WeightMatrix(rows: rows, columns: columns, bfloat16: bits)
    }
    var values: [Float] = []
    values.reserveCapacity(rows * columns)
    for part in parts { values += part.floatValues() }
    return WeightMatrix(rows: rows, columns: columns, float32: values)
  }

  // MARK: Products

  /// `y = x · Wᵀ` (or `y += x · Wᵀ` when `accumulate`) for x (S, in) and y (S, out), both
  /// row-major and contiguous. One row takes the matrix-vector path, more rows the BLAS path.
  public func apply(
    _ x: UnsafePointer<Float>, count s: Int, into y: UnsafeMutablePointer<Float>, accumulate: Bool = false
  ) {
    if s == 1 {
      matvec(x, into: y, accumulate: accumulate)
    } else {
      matmul(x, count: s, into: y, accumulate: accumulate)
    }
  }

  /// Array form of `apply`; `x.count` must be at least S·in and `y.count` at least S·out.
  public func apply(_ x: [Float], count s: Int, into y: inout [Float], accumulate: Bool = false) {
    precondition(x.count >= s * columns && y.count >= s * rows, "buffers too small for \(s) rows")
    x.withUnsafeBufferPointer { xb in
      y.withUnsafeMutableBufferPointer { yb in
        apply(xb.baseAddress!, count: s, into: yb.baseAddress!, accumulate: accumulate)
      }
    }
  }

  /// One token: `y = W · x` (+ y), x (in), y (out).
  ///
  /// Runs the C kernels of `CKernels`, split by rows over `threadCount` threads of its pool
  /// when the matrix is large enough for that to pay (see Sources/CKernels/matvec.c), or
  /// OpenBLAS's `sgemv` when `float32Kernel` is `.blas`.
  public func matvec(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
    Self.matchPoolThreads()
    switch storage {
    case .float32(let values):
      values.withUnsafeBufferPointer { w in
        if Self.float32Kernel == .blas {
          cblas_sgemv(
            CblasRowMajor, CblasNoTrans, Int32(rows), Int32(columns), 1, w.baseAddress!,
            Int32(columns), x, 1, accumulate ? 1 : 0, y, 1)
        } else {
          xl_matvec_f32(
            w.baseAddress!, rows, columns, x, y, accumulate ? 1 : 0,
            Int32(Self.float32Kernel == .portable ? XL_MATVEC_PORTABLE : XL_MATVEC_BEST))
        }
      }
    case .bfloat16(let bits):
      bits.withUnsafeBufferPointer { w in
        let path: Int32
        switch Self.bfloat16Kernel {
        case .vector: path = Int32(XL_MATVEC_BEST)
        case .widening: path = Int32(XL_MATVEC_WIDENING)
        case .portable: path = Int32(XL_MATVEC_PORTABLE)
        }
        xl_matvec_bf16(w.baseAddress!, rows, columns, x, y, accumulate ? 1 : 0, path)
      }
    }
  }

  /// Elements of a bfloat16 matrix that `matmul` widens to float32 at a time.
  static let widenedBlockElements = 1 << 22

  /// S tokens: `y = x · Wᵀ` (+ y) through `cblas_sgemm`. bfloat16 rows are widened to a
  /// float32 scratch block by block, which costs little beside an S-row product; below four
  /// rows the matrix-vector path runs once per row instead. A block holds up to 4M elements
  /// (16 MiB) but at least 64 rows, so each layer matrix of SmolLM2-135M is one block. Every
  /// sgemm call packs x again, and narrow calls run slower. With blocks of 256K elements a BF16
  /// student pre-filled 512 tokens at 0.83 of the float32 student's speed, against 0.96–0.98
  /// with 4M.
  public func matmul(
    _ x: UnsafePointer<Float>, count s: Int, into y: UnsafeMutablePointer<Float>, accumulate: Bool = false
  ) {
    if s == 0 || rows == 0 { return }
    switch storage {
    case .float32(let values):
      values.withUnsafeBufferPointer { w in
        BLAS.gemm(
          transposeA: false, transposeB: true, m: s, n: rows, k: columns, a: x, lda: columns,
          b: w.baseAddress!, ldb: columns, beta: accumulate ? 1 : 0, c: y, ldc: rows)
      }
    case .bfloat16(let bits):
      if s < 4 {
        for row in 0..<s { matvec(x + row * columns, into: y + row * rows, accumulate: accumulate) }
        return
      }
      let block = min(rows, max(64, Self.widenedBlockElements / max(columns, 1)))
      withUnsafeTemporaryAllocation(of: Float.self, capacity: block * columns) { scratch in
        let wide = scratch.baseAddress!
        bits.withUnsafeBufferPointer { w in
          var first = 0
          while first < rows {
            let count = min(block, rows - first)
            let source = w.baseAddress! + first * columns
            for index in 0..<(count * columns) { wide[index] = Float(bitPattern: UInt32(source[index]) << 16) }
            BLAS.gemm(
              transposeA: false, transposeB: true, m: s, n: count, k: columns, a: x, lda: columns,
              b: wide, ldb: columns, beta: accumulate ? 1 : 0, c: y + first, ldc: rows)
            first += count
          }
        }
      }
    }
  }

  /// Computes `apply`'s result by the simple path that the fast ones are tested against: plain loops, float32 accumulation in
  /// column order.
  public func referenceApply(_ x: [Float], count s: Int, into y: inout [Float], accumulate: Bool = false) {
    precondition(x.count >= s * columns && y.count >= s * rows, "buffers too small for \(s) rows")
    let w = floatValues()
    for t in 0..<s {
      for r in 0..<rows {
        var sum: Float = 0
        for j in 0..<columns { sum += w[r * columns + j] * x[t * columns + j] }
        y[t * rows + r] = accumulate ? y[t * rows + r] + sum : sum
      }
    }
  }

  // MARK: Conversion

  /// float32 → bfloat16 bits, rounding to nearest even (NaN stays NaN).
  @inline(__always)
  public static func bfloat16Bits(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if value.isNaN { return UInt16(bits >> 16) | 0x40 }
    return UInt16((bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
  }
}

/// A fixed array of elements whose first element is on a 64-byte boundary, as the weights of
/// `WeightMatrix` need. A Swift array's elements start 32 bytes into a 16-byte-aligned
/// allocation, so a 64-byte vector load from a row spans two cache lines. Decode's products
/// streamed 15–30% slower from such rows (C harness, float32 and bfloat16). Immutable after
/// creation, so threads share it freely.
public final class AlignedElements<Element: BitwiseCopyable & Equatable>: @unchecked Sendable, Equatable {
  public let count: Int
  private let base: UnsafeMutablePointer<Element>

  public init(_ elements: [Element]) {
    count = elements.count
    let raw = UnsafeMutableRawPointer.allocate(
      byteCount: max(1, count) * MemoryLayout<Element>.stride, alignment: 64)
    base = raw.bindMemory(to: Element.self, capacity: max(1, count))
    elements.withUnsafeBufferPointer { source in
      if let start = source.baseAddress { base.initialize(from: start, count: count) }
    }
  }

  deinit { UnsafeMutableRawPointer(base).deallocate() }

  /// Calls `body` with the elements; the pointer is valid only inside `body`.
  public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Element>) throws -> R) rethrows -> R {
    try body(UnsafeBufferPointer(start: base, count: count))
  }

  /// The elements as an array (a copy).
  public var array: [Element] { withUnsafeBufferPointer { Array($0) } }

  public static func == (lhs: AlignedElements, rhs: AlignedElements) -> Bool {
    if lhs === rhs { return true }
    return lhs.count == rhs.count
      && lhs.withUnsafeBufferPointer { l in rhs.withUnsafeBufferPointer { r in l.elementsEqual(r) } }
  }
}
