#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif
import CKernels

/// The arithmetic of matrix products with more than one row.
public enum ProductPrecision: String, Codable, Sendable, CaseIterable {
  /// float32 operands and sums (the system BLAS's `sgemm`).
  case float32
  /// Operands rounded to bfloat16, products and sums in float32 (`CKernels`'s AVX-512 BF16
  /// kernel): about twice the multiply-adds per second of float32, with each operand's
  /// relative rounding error up to 2⁻⁹. Training in this precision is what PyTorch's bfloat16
  /// autocast does for matrix products; the parameters, gradients and optimizer stay float32.
  case bfloat16
}

/// Matrix products through the system BLAS (OpenBLAS on Linux, Accelerate on Apple systems).
///
/// All matrices are row-major. Weights follow PyTorch's `nn.Linear` layout (out, in), so the
/// common product is `y = x · Wᵀ`, which `linear` wraps.
public enum BLAS {
  /// Sets how many threads OpenBLAS uses for each product (no effect with Accelerate).
  /// Also sets `WeightMatrix.threadCount`.
  public static func setThreadCount(_ count: Int) {
    WeightMatrix.threadCount = max(1, count)
    #if !canImport(Accelerate)
    openblas_set_num_threads(Int32(max(1, count)))
    #endif
  }

  /// The precision of every `gemm` (and so `linear` and `WeightMatrix.matmul`) in this
  /// process. A process-wide setting, because the products of a training step run on many
  /// threads: `xllama distill` sets it once before training, from the run's configuration.
  /// `.bfloat16` takes effect only where `bfloat16ProductsAvailable`; elsewhere the products
  /// stay float32. Library code and tests that need one precision pass it to `gemm`.
  nonisolated(unsafe) public static var productPrecision = ProductPrecision.float32

  /// Whether this processor has the AVX-512 BF16 instructions that `.bfloat16` products use.
  public static var bfloat16ProductsAvailable: Bool { xl_uses_avx512_bf16() != 0 }

  /// `C = alpha · op(A) · op(B) + beta · C`, with op(A) of shape (m, k) and op(B) of shape (k, n),
  /// in `precision` (by default `productPrecision`).
  ///
  /// `lda`, `ldb` and `ldc` are the row strides of A, B and C as stored (before transposition).
  @inlinable
  public static func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, precision: ProductPrecision? = nil
  ) {
    if m == 0 || n == 0 { return }
    if (precision ?? productPrecision) == .bfloat16 && bfloat16ProductsAvailable && m > 1 {
      WeightMatrix.matchPoolThreads()
      // A failed allocation of the packing buffers falls through to float32.
      if xl_gemm_bf16(transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 0) == 0 {
        return
      }
    }
    cblas_sgemm(
      CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
      Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
  }

  /// Computes `gemm`'s bfloat16 product on any processor. It runs the AVX-512 BF16 kernel where
  /// the processor has it, else (or when `portable`) the plain C loop that the kernel is tested
  /// against, which is many times slower than `sgemm`. Returns false when the packing buffers
  /// could not be allocated.
  static func gemmBFloat16(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, portable: Bool
  ) -> Bool {
    WeightMatrix.matchPoolThreads()
    return xl_gemm_bf16(
      transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
      portable || !bfloat16ProductsAvailable ? 1 : 0) == 0
  }

  /// `y = x · Wᵀ (+ beta · y)` for `rows` input rows of width `inFeatures`, with W of shape
  /// (outFeatures, inFeatures) as in PyTorch's `nn.Linear`.
  @inlinable
  public static func linear(
    _ x: UnsafePointer<Float>, rows: Int, inFeatures: Int,
    weight: UnsafePointer<Float>, outFeatures: Int,
    into y: UnsafeMutablePointer<Float>, accumulate: Bool = false
  ) {
    if rows == 1 {
      cblas_sgemv(
        CblasRowMajor, CblasNoTrans, Int32(outFeatures), Int32(inFeatures), 1, weight,
        Int32(inFeatures), x, 1, accumulate ? 1 : 0, y, 1)
      return
    }
    gemm(
      transposeA: false, transposeB: true, m: rows, n: outFeatures, k: inFeatures,
      a: x, lda: inFeatures, b: weight, ldb: inFeatures, beta: accumulate ? 1 : 0,
      c: y, ldc: outFeatures)
  }
}
