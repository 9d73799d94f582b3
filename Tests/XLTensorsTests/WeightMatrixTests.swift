import Testing
@testable import XLTensors

/// The fast products of `WeightMatrix` against its plain-loop reference.
///
/// Tolerance: per output element, 1e-5 · Σ|w·x| + 1e-6, a float32 summation-order bound
/// (the paths add the same products in a different order). The bfloat16 dot-product loop also
/// carries x as two bfloat16 halves, off by at most 2⁻¹⁷·|x| per element. That is 0.76 of the
/// bound's first term when every error has the same sign, and far less for random x, whose
/// errors cancel. With x's low half dropped the products exceeded the bound 69-fold.
@Suite("Weight matrix products")
struct WeightMatrixTests {
  static let shapes: [(rows: Int, columns: Int)] = [(1, 1), (5, 17), (37, 53), (64, 576), (13, 1536), (513, 517), (7, 8227)]

  static func random(_ count: Int, seed: UInt64) -> [Float] {
    var generator = SplitMix64(seed: seed)
    return (0..<count).map { _ in generator.nextNormal() }
  }

  static func bfloat16(_ values: [Float]) -> [UInt16] { values.map(WeightMatrix.bfloat16Bits) }

  /// Checks `fast` (S, out) against the reference for x (S, in) with the bound above.
  static func expectClose(_ fast: [Float], _ matrix: WeightMatrix, x: [Float], count s: Int, start: [Float]?) {
    var expected = start ?? [Float](repeating: 0, count: s * matrix.rows)
    matrix.referenceApply(x, count: s, into: &expected, accumulate: start != nil)
    let w = matrix.floatValues()
    var worst: Float = 0
    for t in 0..<s {
      for r in 0..<matrix.rows {
        var magnitude: Float = 0
        for j in 0..<matrix.columns { magnitude += abs(w[r * matrix.columns + j] * x[t * matrix.columns + j]) }
        let error = abs(fast[t * matrix.rows + r] - expected[t * matrix.rows + r])
        worst = max(worst, error / (1e-5 * magnitude + 1e-6))
      }
    }
    #expect(worst <= 1, "error reached \(worst) times the bound for (\(matrix.rows), \(matrix.columns)), S = \(s)")
  }

  static func matrices(rows: Int, columns: Int, seed: UInt64) -> [WeightMatrix] {
    let values = random(rows * columns, seed: seed)
    return [
      WeightMatrix(rows: rows, columns: columns, float32: values),
      WeightMatrix(rows: rows, columns: columns, bfloat16: bfloat16(values)),
    ]
  }

  @Test("matvec matches the reference, both storages", arguments: 0..<shapes.count)
  func matvecMatches(shapeIndex: Int) {
    let (rows, columns) = Self.shapes[shapeIndex]
    for matrix in Self.matrices(rows: rows, columns: columns, seed: UInt64(shapeIndex)) {
      let x = Self.random(columns, seed: 100)
      let start = Self.random(rows, seed: 200)
      for accumulate in [false, true] {
        var y = accumulate ? start : [Float](repeating: 9, count: rows)
        matrix.apply(x, count: 1, into: &y, accumulate: accumulate)
        Self.expectClose(y, matrix, x: x, count: 1, start: accumulate ? start : nil)
      }
    }
  }

  /// Runs `body` with the given kernels and thread count selected, then restores the defaults.
  /// Tests running beside it may pick up the selection; every kernel gives correct results,
  /// so only their speed changes.
  static func withKernels(
    _ float32: WeightMatrix.Float32Kernel, _ bfloat16: WeightMatrix.BFloat16Kernel, threads: Int, _ body: () -> Void
  ) {
    WeightMatrix.float32Kernel = float32
    WeightMatrix.bfloat16Kernel = bfloat16
    WeightMatrix.threadCount = threads
    body()
    WeightMatrix.float32Kernel = .vector
    WeightMatrix.bfloat16Kernel = .vector
    WeightMatrix.threadCount = 2
  }

  @Test("every matvec kernel matches the reference, on one thread and on three", arguments: 0..<shapes.count)
  func kernelsMatch(shapeIndex: Int) {
    let (rows, columns) = Self.shapes[shapeIndex]
    let kernels: [(WeightMatrix.Float32Kernel, WeightMatrix.BFloat16Kernel)] = [
      (.vector, .vector), (.portable, .portable), (.blas, .widening),
    ]
    for (float32, bfloat16) in kernels {
      for threads in [1, 3] {
        for matrix in Self.matrices(rows: rows, columns: columns, seed: UInt64(shapeIndex) + 20) {
          let x = Self.random(columns, seed: 21)
          let start = Self.random(rows, seed: 22)
          for accumulate in [false, true] {
            var y = accumulate ? start : [Float](repeating: 9, count: rows)
            Self.withKernels(float32, bfloat16, threads: threads) {
              matrix.apply(x, count: 1, into: &y, accumulate: accumulate)
            }
            Self.expectClose(y, matrix, x: x, count: 1, start: accumulate ? start : nil)
          }
        }
      }
    }
  }

  @Test("products started on several threads at once all come out right")
  func concurrentProducts() async {
    // Each task's products race for the pool; a task that finds it busy runs alone.
    let matrices = Self.matrices(rows: 700, columns: 333, seed: 31)
    let x = Self.random(333, seed: 32)
    await withTaskGroup(of: (Int, [Float]).self) { group in
      for task in 0..<8 {
        group.addTask {
          var y = [Float](repeating: 0, count: 700)
          for _ in 0..<50 { matrices[task % 2].apply(x, count: 1, into: &y) }
          return (task % 2, y)
        }
      }
      for await (index, y) in group {
        Self.expectClose(y, matrices[index], x: x, count: 1, start: nil)
      }
    }
  }

  @Test("matmul matches the reference, both storages", arguments: [2, 3, 4, 9])
  func matmulMatches(rowsOfX s: Int) {
    for (index, shape) in Self.shapes.enumerated() where shape.rows * shape.columns < 100_000 {
      for matrix in Self.matrices(rows: shape.rows, columns: shape.columns, seed: UInt64(index) + 50) {
        let x = Self.random(s * shape.columns, seed: 300)
        let start = Self.random(s * shape.rows, seed: 400)
        for accumulate in [false, true] {
          var y = accumulate ? start : [Float](repeating: 0, count: s * shape.rows)
          matrix.apply(x, count: s, into: &y, accumulate: accumulate)
          Self.expectClose(y, matrix, x: x, count: s, start: accumulate ? start : nil)
        }
      }
    }
  }

  @Test("bfloat16 products keep infinities and NaNs", arguments: [Float.infinity, -3.4e38, .nan])
  func bfloat16NonFinite(extreme: Float) {
    // 3.4e38 is finite in float32 but rounds to infinity in bfloat16.
    let (rows, columns) = (6, 96)
    let matrix = WeightMatrix(rows: rows, columns: columns, bfloat16: Self.bfloat16(Self.random(rows * columns, seed: 40)))
    var x = Self.random(columns, seed: 41)
    x[37] = extreme
    var expected = [Float](repeating: 0, count: rows)
    matrix.referenceApply(x, count: 1, into: &expected)
    for kernel in [WeightMatrix.BFloat16Kernel.vector, .widening, .portable] {
      var y = [Float](repeating: 0, count: rows)
      Self.withKernels(.vector, kernel, threads: 1) { matrix.apply(x, count: 1, into: &y) }
      for row in 0..<rows {
        #expect(y[row].isNaN == expected[row].isNaN, "\(kernel) row \(row): \(y[row]) against \(expected[row])")
        #expect(y[row].isInfinite == expected[row].isInfinite, "\(kernel) row \(row): \(y[row]) against \(expected[row])")
        if expected[row].isInfinite { #expect(y[row] == expected[row], "\(kernel) row \(row)") }
      }
    }
  }

  @Test("bfloat16 matmul spans several conversion blocks")
  func bfloat16MatmulBlocks() {
    // 300 columns and more rows than one block holds, so the second block is partial.
    let columns = 300
    let blockRows = WeightMatrix.widenedBlockElements / columns
    let (rows, s) = (blockRows + 519, 4)
    let matrix = WeightMatrix(rows: rows, columns: columns, bfloat16: Self.bfloat16(Self.random(rows * columns, seed: 9)))
    let x = Self.random(s * columns, seed: 10)
    var y = [Float](repeating: 0, count: s * rows)
    matrix.matmul(x, count: s, into: &y)
    Self.expectClose(y, matrix, x: x, count: s, start: nil)
  }

  @Test("bfloat16 rounding is to nearest even")
  func bfloat16Rounding() {
    #expect(WeightMatrix.bfloat16Bits(1) == 0x3F80)
    #expect(WeightMatrix.bfloat16Bits(-2) == 0xC000)
    // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
    #expect(WeightMatrix.bfloat16Bits(1 + 0x1p-8) == 0x3F80)
    // 1 + 3·2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: ties go to 1 + 2^-6.
    #expect(WeightMatrix.bfloat16Bits(1 + 3 * 0x1p-8) == 0x3F82)
    #expect(WeightMatrix.bfloat16Bits(1 + 0x1p-7 + 0x1p-10) == 0x3F81)
    #expect(Float(bitPattern: UInt32(WeightMatrix.bfloat16Bits(.nan)) << 16).isNaN)
  }

  @Test("rows, stacking and widening keep the elements")
  func rowsAndStacking() {
    let a = WeightMatrix(rows: 2, columns: 3, bfloat16: Self.bfloat16([1, 2, 3, 4, 5, 6]))
    let b = WeightMatrix(rows: 1, columns: 3, bfloat16: Self.bfloat16([-1, -2, -3]))
    let stacked = WeightMatrix.stacking([a, b])
    #expect(stacked.isBFloat16 && stacked.rows == 3)
    #expect(stacked.floatValues() == [1, 2, 3, 4, 5, 6, -1, -2, -3])
    let mixed = WeightMatrix.stacking([a, WeightMatrix(rows: 1, columns: 3, float32: [0.5, 0, 0])])
    #expect(!mixed.isBFloat16)
    #expect(mixed.floatValues() == [1, 2, 3, 4, 5, 6, 0.5, 0, 0])
    var row = [Float](repeating: 0, count: 3)
    row.withUnsafeMutableBufferPointer { stacked.row(2, into: $0.baseAddress!) }
    #expect(row == [-1, -2, -3])
    #expect(stacked.byteCount == 18)
  }
}

@Suite("Aligned weight storage")
struct AlignedElementsTests {
  @Test("weights start on a 64-byte boundary and keep their values")
  func alignedAndEqual() {
    for count in [0, 1, 7, 1000] {
      let values = (0..<count).map { Float($0) - 3.5 }
      let matrix = WeightMatrix(rows: count == 0 ? 0 : 1, columns: count, float32: values)
      guard case .float32(let elements) = matrix.storage else {
        Issue.record("float32 storage expected")
        continue
      }
      elements.withUnsafeBufferPointer { buffer in
        if let start = buffer.baseAddress {
          #expect(Int(bitPattern: start) % 64 == 0, "\(count) elements start at \(start)")
        }
      }
      #expect(matrix.floatValues() == values)
      #expect(elements == AlignedElements(values))
    }
    #expect(AlignedElements<UInt16>([1, 2]) != AlignedElements<UInt16>([1, 3]))
  }
}
