import Foundation
import XLTensors

/// Forward and backward passes of the student's building blocks on row-major float buffers.
///
/// Conventions shared by every pair:
/// - Shapes use the package vocabulary (S rows of tokens, D model width, NH heads, DH head
///   width, V vocabulary); a "row" is one token.
/// - Every backward function *adds* into each gradient buffer it is given, inputs and
///   parameters alike, as PyTorch accumulates `.grad`. Callers zero the buffers first. This
///   makes residual branches and sums over layers or micro-batches plain additions.
/// - Values a forward pass saves for its backward are named `saved…` in both signatures.
public enum TrainingKernels {}

// MARK: - Embedding

extension TrainingKernels {
  /// Copies row `ids[t]` of the table into output row t.
  ///
  /// ids (S), table (V, D) → output (S, D). Precondition: every id is in `0..<vocabSize`.
  public static func embeddingForward(
    ids: UnsafePointer<Int32>, count: Int, table: UnsafePointer<Float>, vocabSize: Int, dim: Int,
    into output: UnsafeMutablePointer<Float>
  ) {
    for t in 0..<count {
      let id = Int(ids[t])
      precondition(id >= 0 && id < vocabSize, "token id \(id) outside 0..<\(vocabSize)")
      (output + t * dim).update(from: table + id * dim, count: dim)
    }
  }

  /// Scatter-adds output row t into table row `ids[t]`; repeated ids sum.
  ///
  /// ids (S), outputGrad (S, D) → tableGrad (V, D) +=.
  public static func embeddingBackward(
    ids: UnsafePointer<Int32>, count: Int, outputGrad: UnsafePointer<Float>, dim: Int,
    tableGrad: UnsafeMutablePointer<Float>
  ) {
    for t in 0..<count {
      let target = tableGrad + Int(ids[t]) * dim
      let source = outputGrad + t * dim
      for j in 0..<dim { target[j] += source[j] }
    }
  }
}

// MARK: - Linear

extension TrainingKernels {
  /// `y = x · Wᵀ (+ bias)`, W in PyTorch's (out, in) layout.
  ///
  /// x (S, in), weight (out, in), bias (out) or nil → y (S, out), overwritten.
  public static func linearForward(
    _ x: UnsafePointer<Float>, rows: Int, inFeatures: Int,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>? = nil, outFeatures: Int,
    into y: UnsafeMutablePointer<Float>
  ) {
    BLAS.linear(x, rows: rows, inFeatures: inFeatures, weight: weight, outFeatures: outFeatures,
                into: y)
    if let bias {
      for row in 0..<rows {
        let output = y + row * outFeatures
        for j in 0..<outFeatures { output[j] += bias[j] }
      }
    }
  }

  /// Gradients of `y = x · Wᵀ + b`: `dx += dy · W`, `dW += dyᵀ · x`, `db += Σ_rows dy`.
  ///
  /// x (S, in), weight (out, in), outputGrad (S, out) → inputGrad (S, in), weightGrad (out, in),
  /// biasGrad (out). A gradient passed as nil is not computed.
  public static func linearBackward(
    _ x: UnsafePointer<Float>, rows: Int, inFeatures: Int,
    weight: UnsafePointer<Float>, outFeatures: Int, outputGrad: UnsafePointer<Float>,
    inputGrad: UnsafeMutablePointer<Float>?, weightGrad: UnsafeMutablePointer<Float>?,
    biasGrad: UnsafeMutablePointer<Float>? = nil
  ) {
    if let inputGrad {
      BLAS.gemm(
        transposeA: false, transposeB: false, m: rows, n: inFeatures, k: outFeatures,
        a: outputGrad, lda: outFeatures, b: weight, ldb: inFeatures,
        beta: 1, c: inputGrad, ldc: inFeatures)
    }
    if let weightGrad {
      BLAS.gemm(
        transposeA: true, transposeB: false, m: outFeatures, n: inFeatures, k: rows,
        a: outputGrad, lda: outFeatures, b: x, ldb: inFeatures,
        beta: 1, c: weightGrad, ldc: inFeatures)
    }
    if let biasGrad {
      for row in 0..<rows {
        let source = outputGrad + row * outFeatures
        for j in 0..<outFeatures { biasGrad[j] += source[j] }
      }
    }
  }
}

// MARK: - RMSNorm

extension TrainingKernels {
  /// RMSNorm `y = w · x · r` with `r = 1 / sqrt(mean(x²) + eps)` per row.
  ///
  /// x (S, D), weight (D) → y (S, D); saves savedInverseRMS (S) = r for the backward pass.
  public static func rmsNormForward(
    _ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: UnsafePointer<Float>, eps: Float,
    into y: UnsafeMutablePointer<Float>, savedInverseRMS: UnsafeMutablePointer<Float>
  ) {
    for row in 0..<rows {
      let input = x + row * dim
      let output = y + row * dim
      var sumOfSquares: Double = 0
      for j in 0..<dim { sumOfSquares += Double(input[j] * input[j]) }
      let r = Float(1 / (sumOfSquares / Double(dim) + Double(eps)).squareRoot())
      savedInverseRMS[row] = r
      for j in 0..<dim { output[j] = weight[j] * (input[j] * r) }
    }
  }

  /// Gradients of RMSNorm: with `g = w · dy`,
  /// `dx = r · g − x · r³ · mean(g · x)` and `dw += Σ_rows dy · x · r`.
  ///
  /// x (S, D), weight (D), savedInverseRMS (S), outputGrad (S, D) → inputGrad (S, D),
  /// weightGrad (D).
  public static func rmsNormBackward(
    _ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: UnsafePointer<Float>,
    savedInverseRMS: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
    inputGrad: UnsafeMutablePointer<Float>, weightGrad: UnsafeMutablePointer<Float>?
  ) {
    for row in 0..<rows {
      let input = x + row * dim
      let dy = outputGrad + row * dim
      let dx = inputGrad + row * dim
      let r = savedInverseRMS[row]

      var dotGX: Float = 0
      for j in 0..<dim { dotGX += weight[j] * dy[j] * input[j] }
      let correction = r * r * r * dotGX / Float(dim)
      for j in 0..<dim { dx[j] += r * weight[j] * dy[j] - input[j] * correction }

      if let weightGrad {
        for j in 0..<dim { weightGrad[j] += dy[j] * input[j] * r }
      }
    }
  }
}

// MARK: - Per-head LayerNorm

extension TrainingKernels {
  /// LayerNorm over each head's DH values, mean-centred, with a weight and no bias:
  /// `y = w · (x − μ) · r`, `r = 1 / sqrt(var + eps)` (biased variance, as PyTorch's LayerNorm).
  ///
  /// x (S, NH·DH), weight (NH·DH) → y (S, NH·DH); saves savedMean (S, NH) and
  /// savedInverseStd (S, NH) = r.
  public static func headLayerNormForward(
    _ x: UnsafePointer<Float>, rows: Int, heads: Int, headDim: Int,
    weight: UnsafePointer<Float>, eps: Float, into y: UnsafeMutablePointer<Float>,
    savedMean: UnsafeMutablePointer<Float>, savedInverseStd: UnsafeMutablePointer<Float>
  ) {
    for group in 0..<(rows * heads) {
      let input = x + group * headDim
      let output = y + group * headDim
      let w = weight + (group % heads) * headDim

      var sum: Double = 0
      for j in 0..<headDim { sum += Double(input[j]) }
      let mean = Float(sum / Double(headDim))
      var squares: Double = 0
      for j in 0..<headDim {
        let centred = Double(input[j] - mean)
        squares += centred * centred
      }
      let r = Float(1 / (squares / Double(headDim) + Double(eps)).squareRoot())

      savedMean[group] = mean
      savedInverseStd[group] = r
      for j in 0..<headDim { output[j] = w[j] * ((input[j] - mean) * r) }
    }
  }

  /// Gradients of the per-head LayerNorm: with `x̂ = (x − μ) · r` and `g = w · dy`,
  /// `dx = r · (g − mean(g) − x̂ · mean(g · x̂))` and `dw += Σ_rows dy · x̂`.
  ///
  /// x (S, NH·DH), weight (NH·DH), savedMean and savedInverseStd (S, NH),
  /// outputGrad (S, NH·DH) → inputGrad (S, NH·DH), weightGrad (NH·DH).
  public static func headLayerNormBackward(
    _ x: UnsafePointer<Float>, rows: Int, heads: Int, headDim: Int,
    weight: UnsafePointer<Float>, savedMean: UnsafePointer<Float>,
    savedInverseStd: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
    inputGrad: UnsafeMutablePointer<Float>, weightGrad: UnsafeMutablePointer<Float>?
  ) {
    for group in 0..<(rows * heads) {
      let input = x + group * headDim
      let dy = outputGrad + group * headDim
      let dx = inputGrad + group * headDim
      let offset = (group % heads) * headDim
      let w = weight + offset
      let mean = savedMean[group]
      let r = savedInverseStd[group]

      var sumG: Float = 0
      var sumGXHat: Float = 0
      for j in 0..<headDim {
        let g = w[j] * dy[j]
        sumG += g
        sumGXHat += g * (input[j] - mean) * r
      }
      let meanG = sumG / Float(headDim)
      let meanGXHat = sumGXHat / Float(headDim)
      for j in 0..<headDim {
        let xHat = (input[j] - mean) * r
        dx[j] += r * (w[j] * dy[j] - meanG - xHat * meanGXHat)
      }

      if let weightGrad {
        let wg = weightGrad + offset
        for j in 0..<headDim { wg[j] += dy[j] * (input[j] - mean) * r }
      }
    }
  }
}

// MARK: - Element-wise operations

extension TrainingKernels {
  @inlinable static func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

  /// SwiGLU `y = silu(g) · u` with `silu(g) = g · σ(g)`.
  ///
  /// gate, up, y: (count) each, any shape flattened (S, MLP hidden in the MLP).
  public static func swiGLUForward(
    gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int,
    into y: UnsafeMutablePointer<Float>
  ) {
    for i in 0..<count {
      let g = gate[i]
      y[i] = g * sigmoid(g) * up[i]
    }
  }

  /// Gradients of SwiGLU: `du += dy · silu(g)`, `dg += dy · u · σ(g) · (1 + g · (1 − σ(g)))`.
  ///
  /// gate, up, outputGrad → gateGrad, upGrad: (count) each.
  public static func swiGLUBackward(
    gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int,
    outputGrad: UnsafePointer<Float>,
    gateGrad: UnsafeMutablePointer<Float>, upGrad: UnsafeMutablePointer<Float>
  ) {
    for i in 0..<count {
      let g = gate[i]
      let s = sigmoid(g)
      upGrad[i] += outputGrad[i] * g * s
      gateGrad[i] += outputGrad[i] * up[i] * s * (1 + g * (1 - s))
    }
  }

  /// Soft cap `y = c · tanh(x / c)`, which bounds the gate pre-activations to (−c, c).
  ///
  /// x, y: (count) each; y is also the value saved for the backward pass.
  public static func softCapForward(
    _ x: UnsafePointer<Float>, count: Int, cap: Float, into y: UnsafeMutablePointer<Float>
  ) {
    for i in 0..<count { y[i] = cap * tanh(x[i] / cap) }
  }

  /// Gradient of the soft cap from its saved output: `dx += dy · (1 − (y / c)²)`.
  ///
  /// savedOutput, outputGrad → inputGrad: (count) each.
  public static func softCapBackward(
    savedOutput: UnsafePointer<Float>, count: Int, cap: Float,
    outputGrad: UnsafePointer<Float>, inputGrad: UnsafeMutablePointer<Float>
  ) {
    for i in 0..<count {
      let t = savedOutput[i] / cap
      inputGrad[i] += outputGrad[i] * (1 - t * t)
    }
  }

  /// Output gate `y = h · σ(o)`.
  ///
  /// h, o, y: (count) each, (S, NH·DH) in the mixer.
  public static func sigmoidGateForward(
    _ h: UnsafePointer<Float>, gate o: UnsafePointer<Float>, count: Int,
    into y: UnsafeMutablePointer<Float>
  ) {
    for i in 0..<count { y[i] = h[i] * sigmoid(o[i]) }
  }

  /// Gradients of the output gate: `dh += dy · σ(o)`, `do += dy · h · σ(o) · (1 − σ(o))`.
  ///
  /// h, o, outputGrad → inputGrad, gateGrad: (count) each.
  public static func sigmoidGateBackward(
    _ h: UnsafePointer<Float>, gate o: UnsafePointer<Float>, count: Int,
    outputGrad: UnsafePointer<Float>,
    inputGrad: UnsafeMutablePointer<Float>, gateGrad: UnsafeMutablePointer<Float>
  ) {
    for i in 0..<count {
      let s = sigmoid(o[i])
      inputGrad[i] += outputGrad[i] * s
      gateGrad[i] += outputGrad[i] * h[i] * s * (1 - s)
    }
  }

  /// Residual connection `y = x + f`; pass the same buffer as `y` and `x` for `x += f`.
  ///
  /// x, branch, y: (count) each, (S, D) in a decoder layer.
  public static func residualForward(
    _ x: UnsafePointer<Float>, branch: UnsafePointer<Float>, count: Int,
    into y: UnsafeMutablePointer<Float>
  ) {
    for i in 0..<count { y[i] = x[i] + branch[i] }
  }

  /// Gradient of the residual: the output gradient flows unchanged into both summands,
  /// `dx += dy` and `dbranch += dy`. Pass nil for a side that is not needed.
  ///
  /// outputGrad → inputGrad, branchGrad: (count) each.
  public static func residualBackward(
    outputGrad: UnsafePointer<Float>, count: Int,
    inputGrad: UnsafeMutablePointer<Float>?, branchGrad: UnsafeMutablePointer<Float>?
  ) {
    if let inputGrad {
      for i in 0..<count { inputGrad[i] += outputGrad[i] }
    }
    if let branchGrad {
      for i in 0..<count { branchGrad[i] += outputGrad[i] }
    }
  }
}
