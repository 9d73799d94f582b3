import Foundation
import XLlama

/// `bench --kernels`: single-token products of the model shapes with every kernel, each over
/// enough distinct matrices (about 128 MB of float32) that the weights stream from memory as
/// in decode. Prints wall-clock microseconds per product with the threads set (so run it on an
/// idle machine) and the bandwidth that reaches.
enum KernelBench {
  static let shapes: [(name: String, rows: Int, columns: Int)] = [
    ("k/v 192x576", 192, 576), ("q/o 576x576", 576, 576), ("student mixer 1554x576", 1554, 576),
    ("gate/up 1536x576", 1536, 576), ("student gate+up 3072x576", 3072, 576),
    ("down 576x1536", 576, 1536), ("lm_head 49152x576", 49152, 576),
  ]

  static func run() {
    runBandwidth()
    var random = SplitMix64(seed: 3)
    for shape in shapes {
      let elements = shape.rows * shape.columns
      let copies = max(1, (128 << 20) / (4 * elements))
      let f32 = (0..<copies).map { _ in
        WeightMatrix(rows: shape.rows, columns: shape.columns, float32: (0..<elements).map { _ in Float(random.next() % 1000) / 1000 - 0.5 })
      }
      let bf16 = f32.map { m in
        WeightMatrix(rows: m.rows, columns: m.columns, bfloat16: m.floatValues().map { UInt16($0.bitPattern >> 16) })
      }
      let x = (0..<shape.columns).map { Float($0 % 7) / 7 }
      var y = [Float](repeating: 0, count: shape.rows)
      func time(_ matrices: [WeightMatrix]) -> Double {
        var best = Double.infinity
        for _ in 0..<4 {
          let start = DispatchTime.now().uptimeNanoseconds
          x.withUnsafeBufferPointer { xb in
            y.withUnsafeMutableBufferPointer { yb in
              for m in matrices { m.matvec(xb.baseAddress!, into: yb.baseAddress!) }
            }
          }
          best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(matrices.count))
        }
        return best
      }
      var line = shape.name
      for (label, kernel) in [("f32 vector", WeightMatrix.Float32Kernel.vector), ("f32 sgemv", .blas), ("f32 portable", .portable)] {
        WeightMatrix.float32Kernel = kernel
        let seconds = time(f32)
        line += String(format: "  %@ %.1f us (%.1f GB/s)", label, seconds * 1e6, Double(4 * elements) / seconds / 1e9)
      }
      WeightMatrix.float32Kernel = .vector
      for (label, kernel) in [
        ("bf16 vector", WeightMatrix.BFloat16Kernel.vector), ("bf16 widening", .widening), ("bf16 portable", .portable),
      ] {
        WeightMatrix.bfloat16Kernel = kernel
        let seconds = time(bf16)
        line += String(format: "  %@ %.1f us (%.1f GB/s)", label, seconds * 1e6, Double(2 * elements) / seconds / 1e9)
      }
      WeightMatrix.bfloat16Kernel = .vector
      stderrLine(line)
    }
  }

  /// Prints the read bandwidth of memory with the threads set: the best of five sums over
  /// 512 MiB, which decode's matrix-vector products are compared with.
  static func runBandwidth() {
    let count = (512 << 20) / 4
    // Aligned like the weights, so that the probe pays no split cache-line loads either.
    let values = AlignedElements([Float](repeating: 1, count: count))
    var best = Double.infinity
    values.withUnsafeBufferPointer { buffer in
      for _ in 0..<5 {
        let start = DispatchTime.now().uptimeNanoseconds
        _ = Kernels.parallelSum(buffer.baseAddress!, count: count)
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
      }
    }
    stderrLine(String(format: "memory read bandwidth (%d threads): %.1f GB/s", WeightMatrix.threadCount, Double(4 * count) / best / 1e9))
  }

  /// Wall-clock GFLOP/s of OpenBLAS sgemm at the prefill shapes of SmolLM2-135M (512 tokens),
  /// the ceiling that prefill's matrix products can reach with the threads set.
  static func runGEMM() {
    var random = SplitMix64(seed: 5)
    let tokens = 512
    var totalFlops = 0.0
    var totalSeconds = 0.0
    for (name, outFeatures, inFeatures) in [
      ("k/v", 192, 576), ("q/o", 576, 576), ("gate/up", 1536, 576), ("down", 576, 1536),
    ] {
      let x = (0..<(tokens * inFeatures)).map { _ in Float(random.next() % 1000) / 1000 - 0.5 }
      let w = (0..<(outFeatures * inFeatures)).map { _ in Float(random.next() % 1000) / 1000 - 0.5 }
      var y = [Float](repeating: 0, count: tokens * outFeatures)
      var best = Double.infinity
      for _ in 0..<20 {
        let start = Date()
        BLAS.linear(x, rows: tokens, inFeatures: inFeatures, weight: w, outFeatures: outFeatures, into: &y)
        best = min(best, Date().timeIntervalSince(start))
      }
      let flops = 2.0 * Double(tokens * inFeatures * outFeatures)
      totalFlops += flops
      totalSeconds += best
      stderrLine(String(format: "sgemm %@ 512x%dx%d: %.1f GFLOP/s", name, inFeatures, outFeatures, flops / best / 1e9))
    }
    stderrLine(String(format: "sgemm over these shapes: %.1f GFLOP/s", totalFlops / totalSeconds / 1e9))
  }
}
