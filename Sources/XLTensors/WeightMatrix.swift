#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif
import CKernels
import Dispatch

/// A model weight of shape (out, in) in PyTorch's `nn.Linear` layout, stored as float32 or as
/// bfloat16 bits, applied as `y = x · Wᵀ`.
///
/// Decoding one token streams every weight once, so its speed is bounded by memory bandwidth:
/// bfloat16 storage halves the bytes read. Products always accumulate in float32; a bfloat16
/// element `b` stands for the float32 with bit pattern `UInt32(b) << 16`.
public struct WeightMatrix: @unchecked Sendable {
  /// The elements, row-major (out, in).
  public enum Storage: Sendable, Equatable {
    case float32([Float])
    case bfloat16([UInt16])
  }

  /// Output features (rows).
  public let rows: Int
  /// Input features (columns).
  public let columns: Int
  public let storage: Storage

  /// Threads a single-token product splits its rows over; `BLAS.setThreadCount` sets it.
  nonisolated(unsafe) public static var threadCount = 2

  /// The float32 matrix-vector kernels: OpenBLAS's `sgemv` or the hand-written SIMD loop.
  public enum Float32Kernel: Sendable { case blas, simd }
  /// The float32 kernel `matvec` runs. `.blas` is the default because it measured faster;
  /// `bench --kernels` switches it to compare.
  nonisolated(unsafe) public static var float32Kernel = Float32Kernel.blas

  /// The bfloat16 matrix-vector kernels: the C loop of `CKernels` (AVX-512 where the
  /// processor has it, portable C otherwise) or the Swift SIMD loop, which the compiler emits
  /// for baseline x86-64 (SSE2) only.
  public enum BFloat16Kernel: Sendable { case c, swift }
  /// The bfloat16 kernel `matvec` runs; `bench --kernels` switches it to compare.
  nonisolated(unsafe) public static var bfloat16Kernel = BFloat16Kernel.c

  public init(rows: Int, columns: Int, float32 values: [Float]) {
    precondition(rows >= 0 && columns >= 0 && values.count == rows * columns,
                 "\(values.count) elements do not fill (\(rows), \(columns))")
    self.rows = rows
    self.columns = columns
    storage = .float32(values)
  }

  public init(rows: Int, columns: Int, bfloat16 bits: [UInt16]) {
    precondition(rows >= 0 && columns >= 0 && bits.count == rows * columns,
                 "\(bits.count) elements do not fill (\(rows), \(columns))")
    self.rows = rows
    self.columns = columns
    storage = .bfloat16(bits)
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

  /// Returns every element widened to float32, row-major.
  public func floatValues() -> [Float] {
    switch storage {
    case .float32(let values): return values
    case .bfloat16(let bits): return bits.map { Float(bitPattern: UInt32($0) << 16) }
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
      for part in parts { if case .bfloat16(let b) = part.storage { bits += b } }
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
  /// float32 storage uses `cblas_sgemv`, which took less processor time than the hand-written
  /// loop at every model shape (`bench --kernels`, one thread). bfloat16 storage runs
  /// `Self.bfloat16Rows`, split by output rows over `threadCount` threads when the matrix is
  /// large enough for that to pay.
  public func matvec(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
    switch storage {
    case .float32(let values):
      values.withUnsafeBufferPointer { w in
        let base = w.baseAddress!
        if Self.float32Kernel == .blas {
          cblas_sgemv(
            CblasRowMajor, CblasNoTrans, Int32(rows), Int32(columns), 1, base,
            Int32(columns), x, 1, accumulate ? 1 : 0, y, 1)
          return
        }
        let (rows, columns) = (self.rows, self.columns)
        let shared = SharedPointers(w: base, x: x, even: x, odd: x, y: y)
        Self.splitRows(rows, parts: Self.partCount(elements: rows * columns, rows: rows)) { range in
          Self.float32Rows(shared.w, rows: range, columns: columns, x: shared.x, y: shared.y, accumulate: accumulate)
        }
      }
    case .bfloat16(let bits):
      let half = columns / 2
      // x split into even and odd columns, matching the two halves of each 32-bit word of
      // the row (see `bfloat16Rows`).
      withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * max(half, 1)) { scratch in
        let even = scratch.baseAddress!
        let odd = even + max(half, 1)
        for j in 0..<half {
          even[j] = x[2 * j]
          odd[j] = x[2 * j + 1]
        }
        bits.withUnsafeBufferPointer { w in
          let base = w.baseAddress!
          let (rows, columns) = (self.rows, self.columns)
          let shared = SharedPointers(w: base, x: x, even: even, odd: odd, y: y)
          Self.splitRows(rows, parts: Self.partCount(elements: rows * columns, rows: rows)) { range in
            if Self.bfloat16Kernel == .c {
              xl_bf16_matvec_rows(
                shared.w, range.lowerBound, range.upperBound, columns, shared.x, shared.even, shared.odd,
                shared.y, accumulate ? 1 : 0)
            } else {
              Self.bfloat16Rows(
                shared.w, rows: range, columns: columns, x: shared.x, even: shared.even, odd: shared.odd,
                y: shared.y, accumulate: accumulate)
            }
          }
        }
      }
    }
  }

  /// S tokens: `y = x · Wᵀ` (+ y) through `cblas_sgemm`. bfloat16 rows are widened to a
  /// float32 scratch block by block, which costs little beside an S-row product; below four
  /// rows the matrix-vector path runs once per row instead.
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
      let block = min(rows, max(64, (1 << 18) / max(columns, 1)))
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

  // MARK: Kernels

  /// float32 → bfloat16 bits, rounding to nearest even (NaN stays NaN).
  @inline(__always)
  public static func bfloat16Bits(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if value.isNaN { return UInt16(bits >> 16) | 0x40 }
    return UInt16((bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
  }

  /// Runs `body` on `parts` contiguous slices of 0..<rows, on that many threads when more
  /// than one.
  @inline(__always)
  static func splitRows(_ rows: Int, parts: Int, _ body: @Sendable (Range<Int>) -> Void) {
    if parts <= 1 {
      body(0..<rows)
      return
    }
    let step = (rows + parts - 1) / parts
    DispatchQueue.concurrentPerform(iterations: parts) { part in
      body((part * step)..<min(rows, (part + 1) * step))
    }
  }

  /// Returns how many threads a matrix-vector product of this size splits over. Below about a
  /// quarter of a million elements it is one, because waking a second thread costs more than
  /// it saves there (an estimate, not tuned on an idle machine).
  static func partCount(elements: Int, rows: Int) -> Int {
    let threads = max(1, threadCount)
    if threads == 1 || elements < (1 << 18) || rows < 8 * threads { return 1 }
    return threads
  }

  /// float32 matrix-vector product for output rows `range`: w (rows × columns), x (columns),
  /// y (rows). Eight columns per step, four rows at a time, and a scalar tail for the rest.
  @inline(__always)
  static func float32Rows(
    _ w: UnsafePointer<Float>, rows range: Range<Int>, columns: Int, x: UnsafePointer<Float>,
    y: UnsafeMutablePointer<Float>, accumulate: Bool
  ) {
    let wideSteps = columns / 8
    @inline(__always) func load(_ pointer: UnsafePointer<Float>) -> SIMD8<Float> {
      UnsafeRawPointer(pointer).loadUnaligned(as: SIMD8<Float>.self)
    }
    @inline(__always) func finish(_ row: Int, _ partial: Float) {
      var sum = partial
      let source = w + row * columns
      for j in (8 * wideSteps)..<columns { sum += source[j] * x[j] }
      y[row] = accumulate ? y[row] + sum : sum
    }
    var row = range.lowerBound
    while row + 4 <= range.upperBound {
      let r0 = w + row * columns, r1 = r0 + columns, r2 = r1 + columns, r3 = r2 + columns
      var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
      for step in 0..<wideSteps {
        let offset = 8 * step
        let xv = load(x + offset)
        a0 += load(r0 + offset) * xv
        a1 += load(r1 + offset) * xv
        a2 += load(r2 + offset) * xv
        a3 += load(r3 + offset) * xv
      }
      finish(row, a0.sum()); finish(row + 1, a1.sum()); finish(row + 2, a2.sum()); finish(row + 3, a3.sum())
      row += 4
    }
    while row < range.upperBound {
      let r0 = w + row * columns
      var a0 = SIMD8<Float>()
      for step in 0..<wideSteps { a0 += load(r0 + 8 * step) * load(x + 8 * step) }
      finish(row, a0.sum())
      row += 1
    }
  }

  /// bfloat16 matrix-vector product for output rows `range` of a (rows, columns) matrix.
  ///
  /// Shapes: w (rows × columns bfloat16), x (columns), even/odd (columns / 2: x's even and odd
  /// elements), y (rows). Each 32-bit word of a row contains two neighbouring elements, the
  /// even one in its low half. So `word << 16` is the even element as float32 and
  /// `word & 0xFFFF0000` the odd one, and the loop needs no shuffles. Eight words (16
  /// elements) per step, four rows at a time, so that each x load serves four rows. Wider
  /// steps would need all sixteen SSE registers for the accumulators alone, because Swift
  /// emits SSE2 code for the baseline x86-64 target.
  /// The words are read unaligned because rows of odd width start mid-word, and an odd last
  /// column is added by a scalar tail.
  @inline(__always)
  static func bfloat16Rows(
    _ w: UnsafePointer<UInt16>, rows range: Range<Int>, columns: Int, x: UnsafePointer<Float>,
    even: UnsafePointer<Float>, odd: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, accumulate: Bool
  ) {
    let half = columns / 2
    let wideSteps = half / 8
    let highMask = SIMD8<UInt32>(repeating: 0xFFFF_0000)

    @inline(__always) func words(_ row: Int, _ step: Int) -> SIMD8<UInt32> {
      UnsafeRawPointer(w + row * columns + 16 * step).loadUnaligned(as: SIMD8<UInt32>.self)
    }
    @inline(__always) func tail(_ row: Int) -> Float {
      let source = w + row * columns
      var sum: Float = 0
      for j in (16 * wideSteps)..<columns { sum += Float(bitPattern: UInt32(source[j]) << 16) * x[j] }
      return sum
    }
    @inline(__always) func store(_ row: Int, _ value: Float) {
      y[row] = accumulate ? y[row] + value : value
    }

    var row = range.lowerBound
    while row + 4 <= range.upperBound {
      var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
      for step in 0..<wideSteps {
        let xe = UnsafeRawPointer(even + 8 * step).loadUnaligned(as: SIMD8<Float>.self)
        let xo = UnsafeRawPointer(odd + 8 * step).loadUnaligned(as: SIMD8<Float>.self)
        let w0 = words(row, step), w1 = words(row + 1, step), w2 = words(row + 2, step), w3 = words(row + 3, step)
        a0 += unsafeBitCast(w0 &<< 16, to: SIMD8<Float>.self) * xe + unsafeBitCast(w0 & highMask, to: SIMD8<Float>.self) * xo
        a1 += unsafeBitCast(w1 &<< 16, to: SIMD8<Float>.self) * xe + unsafeBitCast(w1 & highMask, to: SIMD8<Float>.self) * xo
        a2 += unsafeBitCast(w2 &<< 16, to: SIMD8<Float>.self) * xe + unsafeBitCast(w2 & highMask, to: SIMD8<Float>.self) * xo
        a3 += unsafeBitCast(w3 &<< 16, to: SIMD8<Float>.self) * xe + unsafeBitCast(w3 & highMask, to: SIMD8<Float>.self) * xo
      }
      store(row, a0.sum() + tail(row))
      store(row + 1, a1.sum() + tail(row + 1))
      store(row + 2, a2.sum() + tail(row + 2))
      store(row + 3, a3.sum() + tail(row + 3))
      row += 4
    }
    while row < range.upperBound {
      var a0 = SIMD8<Float>()
      for step in 0..<wideSteps {
        let xe = UnsafeRawPointer(even + 8 * step).loadUnaligned(as: SIMD8<Float>.self)
        let xo = UnsafeRawPointer(odd + 8 * step).loadUnaligned(as: SIMD8<Float>.self)
        let w0 = words(row, step)
        a0 += unsafeBitCast(w0 &<< 16, to: SIMD8<Float>.self) * xe + unsafeBitCast(w0 & highMask, to: SIMD8<Float>.self) * xo
      }
      store(row, a0.sum() + tail(row))
      row += 1
    }
  }
}

/// The pointers of one matrix-vector product, shared by the threads that split its rows.
/// Threads only read w and x and write disjoint rows of y, and the product returns only
/// after every thread has finished, so the pointers outlive their use.
private struct SharedPointers<Element>: @unchecked Sendable {
  let w: UnsafePointer<Element>
  let x: UnsafePointer<Float>
  let even: UnsafePointer<Float>
  let odd: UnsafePointer<Float>
  let y: UnsafeMutablePointer<Float>
}
