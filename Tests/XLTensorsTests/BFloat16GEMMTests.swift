import Testing
@testable import XLTensors

/// The bfloat16 matrix product against float32 `sgemm`.
///
/// On operands already rounded to bfloat16, the two add the same exact products in a different
/// order: per element the difference is bounded by 1e-5 · Σ|a·b| + 1e-6. On the original
/// float32 operands the bfloat16 product also carries both operands' rounding, bounded by
/// 2⁻⁸ · Σ|a·b| (2⁻⁹ each, relative).
@Suite("bfloat16 matrix products")
struct BFloat16GEMMTests {
  struct Case: Sendable, CustomStringConvertible {
    let m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool
    var description: String { "\(m)x\(n)x\(k) \(transposeA ? "T" : "N")\(transposeB ? "T" : "N")" }
  }

  static let cases: [Case] = [
    Case(m: 1, n: 1, k: 1, transposeA: false, transposeB: false),
    Case(m: 13, n: 37, k: 17, transposeA: false, transposeB: true),
    Case(m: 13, n: 37, k: 17, transposeA: false, transposeB: false),
    Case(m: 40, n: 33, k: 64, transposeA: true, transposeB: false),
    Case(m: 9, n: 70, k: 33, transposeA: true, transposeB: true),
    Case(m: 64, n: 96, k: 576, transposeA: false, transposeB: true),
  ]

  static func random(_ count: Int, seed: UInt64) -> [Float] {
    var generator = SplitMix64(seed: seed)
    return (0..<count).map { _ in generator.nextNormal() }
  }

  static func rounded(_ values: [Float]) -> [Float] {
    values.map { Float(bitPattern: UInt32(WeightMatrix.bfloat16Bits($0)) << 16) }
  }

  /// op(A) (m, k) and op(B) (k, n) as stored, with their row strides.
  static func operands(_ c: Case) -> (a: [Float], lda: Int, b: [Float], ldb: Int) {
    let a = random(c.m * c.k, seed: UInt64(c.m * 31 + c.k))
    let b = random(c.k * c.n, seed: UInt64(c.n * 17 + c.k))
    return (a, c.transposeA ? c.m : c.k, b, c.transposeB ? c.k : c.n)
  }

  /// Σ_k |op(A)[i, k] · op(B)[k, j]| for every (i, j).
  static func magnitudes(_ c: Case, a: [Float], lda: Int, b: [Float], ldb: Int) -> [Float] {
    var result = [Float](repeating: 0, count: c.m * c.n)
    for i in 0..<c.m {
      for j in 0..<c.n {
        for p in 0..<c.k {
          let x = c.transposeA ? a[p * lda + i] : a[i * lda + p]
          let y = c.transposeB ? b[j * ldb + p] : b[p * ldb + j]
          result[i * c.n + j] += abs(x * y)
        }
      }
    }
    return result
  }

  static func product(
    _ c: Case, a: [Float], lda: Int, b: [Float], ldb: Int, alpha: Float, beta: Float, start: [Float],
    precision: ProductPrecision, portable: Bool = false
  ) -> [Float] {
    var out = start
    out.withUnsafeMutableBufferPointer { o in
      if precision == .float32 {
        BLAS.gemm(
          transposeA: c.transposeA, transposeB: c.transposeB, m: c.m, n: c.n, k: c.k, alpha: alpha, a: a, lda: lda,
          b: b, ldb: ldb, beta: beta, c: o.baseAddress!, ldc: c.n, precision: .float32)
      } else {
        let done = BLAS.gemmBFloat16(
          transposeA: c.transposeA, transposeB: c.transposeB, m: c.m, n: c.n, k: c.k, alpha: alpha, a: a, lda: lda,
          b: b, ldb: ldb, beta: beta, c: o.baseAddress!, ldc: c.n, portable: portable)
        #expect(done)
      }
    }
    return out
  }

  @Test("equals float32 on rounded operands, vector and portable tiles", arguments: cases)
  func matchesRoundedFloat32(_ c: Case) {
    let (a, lda, b, ldb) = Self.operands(c)
    let (ra, rb) = (Self.rounded(a), Self.rounded(b))
    let start = Self.random(c.m * c.n, seed: 5)
    let magnitude = Self.magnitudes(c, a: ra, lda: lda, b: rb, ldb: ldb)
    for (alpha, beta) in [(Float(1), Float(0)), (0.5, 2)] {
      let expected = Self.product(c, a: ra, lda: lda, b: rb, ldb: ldb, alpha: alpha, beta: beta, start: start, precision: .float32)
      for portable in [false, true] {
        let got = Self.product(
          c, a: a, lda: lda, b: b, ldb: ldb, alpha: alpha, beta: beta, start: start, precision: .bfloat16, portable: portable)
        var worst: Float = 0
        for index in got.indices {
          let bound = 1e-5 * (abs(alpha) * magnitude[index] + abs(beta * start[index])) + 1e-6
          worst = max(worst, abs(got[index] - expected[index]) / bound)
        }
        #expect(worst <= 1, "\(c), alpha \(alpha), beta \(beta), portable \(portable): \(worst) times the bound")
      }
    }
  }

  @Test("stays within the operands' rounding of float32", arguments: cases)
  func closeToFloat32(_ c: Case) {
    let (a, lda, b, ldb) = Self.operands(c)
    let zero = [Float](repeating: 0, count: c.m * c.n)
    let expected = Self.product(c, a: a, lda: lda, b: b, ldb: ldb, alpha: 1, beta: 0, start: zero, precision: .float32)
    let got = Self.product(c, a: a, lda: lda, b: b, ldb: ldb, alpha: 1, beta: 0, start: zero, precision: .bfloat16)
    let magnitude = Self.magnitudes(c, a: a, lda: lda, b: b, ldb: ldb)
    for index in got.indices {
      #expect(abs(got[index] - expected[index]) <= 0x1p-8 * magnitude[index] + 1e-6, "\(c) at \(index)")
    }
  }

  @Test("float32 is the default; bfloat16 applies where the processor has it")
  func defaultPrecisionRoutes() {
    // A product whose float32 and bfloat16 results differ: 1 + 2⁻¹² rounds to 1 in bfloat16.
    let a: [Float] = [1 + 0x1p-12, 0, 0, 1]
    let b: [Float] = [1, 0, 0, 1]
    var c = [Float](repeating: 0, count: 4)
    BLAS.gemm(transposeA: false, transposeB: false, m: 2, n: 2, k: 2, a: a, lda: 2, b: b, ldb: 2, c: &c, ldc: 2)
    #expect(c[0] == 1 + 0x1p-12, "float32 is the default")
    var bf = [Float](repeating: 0, count: 4)
    BLAS.gemm(
      transposeA: false, transposeB: false, m: 2, n: 2, k: 2, a: a, lda: 2, b: b, ldb: 2, c: &bf, ldc: 2,
      precision: .bfloat16)
    #expect(bf[0] == (BLAS.bfloat16ProductsAvailable ? 1 : 1 + 0x1p-12))
  }
}
