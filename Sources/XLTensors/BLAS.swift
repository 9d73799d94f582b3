#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif

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

  /// `C = alpha · op(A) · op(B) + beta · C`, with op(A) of shape (m, k) and op(B) of shape (k, n).
  ///
  /// `lda`, `ldb` and `ldc` are the row strides of A, B and C as stored (before transposition).
  @inlinable
  public static func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    if m == 0 || n == 0 { return }
    cblas_sgemm(
      CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
      Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
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
