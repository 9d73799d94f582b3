import Foundation
import XLModels
import XLTensors

/// The student layer in training form: a forward pass that keeps what its backward pass
/// needs, on T = B·S token rows at once, with the mLSTM cell in its parallel form.
///
/// Follows `StudentLayer` of the reference xllama_ref.py:
/// `x1 = x + out_proj(σ(ogate(n1)) · headNorm(cell(q, k, v, i, f)))` with `n1 = rmsnorm(x)`,
/// then `y = x1 + down(silu(gate(n2)) · up(n2))` with `n2 = rmsnorm(x1)`.
/// Keys and values of NKV heads serve NH / NKV query heads each; the gates are soft-capped.

/// The mixer's inputs of one layer: the normalized layer input and its projections.
struct MixerInputsForward {
  /// rmsnorm(x) (T, D) and its inverse RMS (T).
  var normed: [Float]
  var inverseRMS: [Float]
  /// Soft-capped gate pre-activations (T, NH), saved for the soft cap's backward.
  var inputGate: [Float]
  var forgetGate: [Float]
  /// The cell's inputs: q, k, v (B, NH, S, DH) (v empty when not asked) and gates (B, NH, S).
  var cellQuery: Tensor
  var cellKey: Tensor
  var cellValue: Tensor
  var cellInputGate: Tensor
  var cellForgetGate: Tensor
  /// ogate(n1) (T, NH·DH) before the sigmoid; empty when not asked.
  var outputGate: [Float]

  /// x (T, D) → the mixer's inputs. `full` adds v and the output gate (stage 1 needs neither).
  init(x: [Float], weights w: LayerTensors, geometry g: StudentGeometry, full: Bool) {
    let t = g.tokens
    normed = [Float](repeating: 0, count: t * g.dim)
    inverseRMS = [Float](repeating: 0, count: t)
    TrainingKernels.rmsNormForward(
      x, rows: t, dim: g.dim, weight: w[.inputNorm], eps: g.normEps, into: &normed,
      savedInverseRMS: &inverseRMS)
    var q = [Float](repeating: 0, count: t * g.queryWidth)
    var k = [Float](repeating: 0, count: t * g.keyWidth)
    TrainingKernels.linearForward(normed, rows: t, inFeatures: g.dim, weight: w[.query], outFeatures: g.queryWidth, into: &q)
    TrainingKernels.linearForward(normed, rows: t, inFeatures: g.dim, weight: w[.key], outFeatures: g.keyWidth, into: &k)
    cellQuery = Tensor(shape: g.cellShape, data: g.toCell(q, width: g.queryWidth, headsPerSource: 1))
    cellKey = Tensor(shape: g.cellShape, data: g.toCell(k, width: g.keyWidth, headsPerSource: g.group))

    var preactivation = [Float](repeating: 0, count: t * g.heads)
    inputGate = preactivation
    forgetGate = preactivation
    TrainingKernels.linearForward(
      normed, rows: t, inFeatures: g.dim, weight: w[.inputGate], bias: w[.inputGateBias],
      outFeatures: g.heads, into: &preactivation)
    TrainingKernels.softCapForward(preactivation, count: t * g.heads, cap: g.softCap, into: &inputGate)
    TrainingKernels.linearForward(
      normed, rows: t, inFeatures: g.dim, weight: w[.forgetGate], bias: w[.forgetGateBias],
      outFeatures: g.heads, into: &preactivation)
    TrainingKernels.softCapForward(preactivation, count: t * g.heads, cap: g.softCap, into: &forgetGate)
    cellInputGate = Tensor(shape: g.gateShape, data: g.gatesToCell(inputGate))
    cellForgetGate = Tensor(shape: g.gateShape, data: g.gatesToCell(forgetGate))

    if full {
      var v = [Float](repeating: 0, count: t * g.keyWidth)
      TrainingKernels.linearForward(normed, rows: t, inFeatures: g.dim, weight: w[.value], outFeatures: g.keyWidth, into: &v)
      cellValue = Tensor(shape: g.cellShape, data: g.toCell(v, width: g.keyWidth, headsPerSource: g.group))
      outputGate = [Float](repeating: 0, count: t * g.queryWidth)
      TrainingKernels.linearForward(
        normed, rows: t, inFeatures: g.dim, weight: w[.outputGate], outFeatures: g.queryWidth, into: &outputGate)
    } else {
      cellValue = Tensor(zeros: [0])
      outputGate = []
    }
  }

  /// Backpropagates the cell-input gradients (and, when given, the output-gate
  /// pre-activation gradient (T, NH·DH)) to the projections, the input norm and x.
  ///
  /// Adds parameter gradients into the non-nil `grads` and d(loss)/dx into `inputGrad` when
  /// given.
  func backward(
    x: [Float], weights w: LayerTensors, geometry g: StudentGeometry,
    dQuery: Tensor, dKey: Tensor, dValue: Tensor?, dInputGate: Tensor, dForgetGate: Tensor,
    dOutputGate: [Float]?, grads: LayerGradientTargets, inputGrad: UnsafeMutablePointer<Float>?
  ) {
    let t = g.tokens
    var dNormed = [Float](repeating: 0, count: t * g.dim)

    var dq = [Float](repeating: 0, count: t * g.queryWidth)
    g.addFromCell(dQuery.data, into: &dq, width: g.queryWidth, headsPerSource: 1)
    TrainingKernels.linearBackward(
      normed, rows: t, inFeatures: g.dim, weight: w[.query], outFeatures: g.queryWidth,
      outputGrad: dq, inputGrad: &dNormed, weightGrad: grads[.query])
    var dk = [Float](repeating: 0, count: t * g.keyWidth)
    g.addFromCell(dKey.data, into: &dk, width: g.keyWidth, headsPerSource: g.group)
    TrainingKernels.linearBackward(
      normed, rows: t, inFeatures: g.dim, weight: w[.key], outFeatures: g.keyWidth,
      outputGrad: dk, inputGrad: &dNormed, weightGrad: grads[.key])
    if let dValue {
      var dv = [Float](repeating: 0, count: t * g.keyWidth)
      g.addFromCell(dValue.data, into: &dv, width: g.keyWidth, headsPerSource: g.group)
      TrainingKernels.linearBackward(
        normed, rows: t, inFeatures: g.dim, weight: w[.value], outFeatures: g.keyWidth,
        outputGrad: dv, inputGrad: &dNormed, weightGrad: grads[.value])
    }
    if let dOutputGate {
      TrainingKernels.linearBackward(
        normed, rows: t, inFeatures: g.dim, weight: w[.outputGate], outFeatures: g.queryWidth,
        outputGrad: dOutputGate, inputGrad: &dNormed,
        weightGrad: grads[.outputGate])
    }
    for (capped, dCell, weight, bias) in [
      (inputGate, dInputGate, LayerParameter.inputGate, LayerParameter.inputGateBias),
      (forgetGate, dForgetGate, LayerParameter.forgetGate, LayerParameter.forgetGateBias),
    ] {
      let dCapped = g.gatesFromCell(dCell.data)
      var dPreactivation = [Float](repeating: 0, count: t * g.heads)
      TrainingKernels.softCapBackward(
        savedOutput: capped, count: t * g.heads, cap: g.softCap, outputGrad: dCapped,
        inputGrad: &dPreactivation)
      TrainingKernels.linearBackward(
        normed, rows: t, inFeatures: g.dim, weight: w[weight], outFeatures: g.heads,
        outputGrad: dPreactivation, inputGrad: &dNormed, weightGrad: grads[weight], biasGrad: grads[bias])
    }

    if let inputGrad {
      TrainingKernels.rmsNormBackward(
        x, rows: t, dim: g.dim, weight: w[.inputNorm], savedInverseRMS: inverseRMS,
        outputGrad: dNormed, inputGrad: inputGrad,
        weightGrad: grads[.inputNorm])
    } else {
      var discarded = [Float](repeating: 0, count: t * g.dim)
      TrainingKernels.rmsNormBackward(
        x, rows: t, dim: g.dim, weight: w[.inputNorm], savedInverseRMS: inverseRMS,
        outputGrad: dNormed, inputGrad: &discarded,
        weightGrad: grads[.inputNorm])
    }
  }
}

/// One full layer's forward pass with everything its backward pass needs.
struct StudentLayerForward {
  let geometry: StudentGeometry
  /// The layer input x (T, D).
  let input: [Float]
  var mixer: MixerInputsForward
  /// Per-head LayerNorm input (T, NH·DH), its output, mean and inverse std (T, NH).
  var cellOutput: [Float]
  var headNormed: [Float]
  var headMean: [Float]
  var headInverseStd: [Float]
  /// headNormed · σ(ogate) (T, NH·DH).
  var gated: [Float]
  /// x1 = x + out_proj(gated) (T, D), rmsnorm(x1) and its inverse RMS.
  var afterMixer: [Float]
  var postNormed: [Float]
  var postInverseRMS: [Float]
  /// MLP gate and up projections and silu(gate) · up (T, I).
  var mlpGate: [Float]
  var mlpUp: [Float]
  var activated: [Float]
  /// The layer output y (T, D).
  var output: [Float]

  init(x: [Float], weights w: LayerTensors, geometry g: StudentGeometry) {
    geometry = g
    input = x
    let t = g.tokens
    mixer = MixerInputsForward(x: x, weights: w, geometry: g, full: true)
    let h = MLSTMCell.parallel(
      q: mixer.cellQuery, k: mixer.cellKey, v: mixer.cellValue, i: mixer.cellInputGate,
      f: mixer.cellForgetGate)
    cellOutput = [Float](repeating: 0, count: t * g.queryWidth)
    g.addFromCell(h.data, into: &cellOutput, width: g.queryWidth, headsPerSource: 1)
    headNormed = [Float](repeating: 0, count: t * g.queryWidth)
    headMean = [Float](repeating: 0, count: t * g.heads)
    headInverseStd = headMean
    TrainingKernels.headLayerNormForward(
      cellOutput, rows: t, heads: g.heads, headDim: g.headDim, weight: w[.headNorm], eps: g.normEps,
      into: &headNormed, savedMean: &headMean, savedInverseStd: &headInverseStd)
    gated = [Float](repeating: 0, count: t * g.queryWidth)
    TrainingKernels.sigmoidGateForward(headNormed, gate: mixer.outputGate, count: t * g.queryWidth, into: &gated)
    afterMixer = x
    BLAS.linear(
      gated, rows: t, inFeatures: g.queryWidth, weight: w[.outputProjection], outFeatures: g.dim,
      into: &afterMixer, accumulate: true)

    postNormed = [Float](repeating: 0, count: t * g.dim)
    postInverseRMS = [Float](repeating: 0, count: t)
    TrainingKernels.rmsNormForward(
      afterMixer, rows: t, dim: g.dim, weight: w[.postAttentionNorm], eps: g.normEps,
      into: &postNormed, savedInverseRMS: &postInverseRMS)
    mlpGate = [Float](repeating: 0, count: t * g.mlpWidth)
    mlpUp = mlpGate
    activated = mlpGate
    TrainingKernels.linearForward(postNormed, rows: t, inFeatures: g.dim, weight: w[.mlpGate], outFeatures: g.mlpWidth, into: &mlpGate)
    TrainingKernels.linearForward(postNormed, rows: t, inFeatures: g.dim, weight: w[.mlpUp], outFeatures: g.mlpWidth, into: &mlpUp)
    TrainingKernels.swiGLUForward(gate: mlpGate, up: mlpUp, count: t * g.mlpWidth, into: &activated)
    output = afterMixer
    BLAS.linear(
      activated, rows: t, inFeatures: g.mlpWidth, weight: w[.mlpDown], outFeatures: g.dim,
      into: &output, accumulate: true)
  }

  /// Backpropagates dy (T, D): adds the layer's parameter gradients into the non-nil `grads`
  /// and returns d(loss)/dx (T, D).
  func backward(outputGrad dy: [Float], weights w: LayerTensors, grads: LayerGradientTargets) -> [Float] {
    let g = geometry
    let t = g.tokens
    // y = x1 + down(act): dx1 = dy, then the MLP branch.
    var dAfterMixer = dy
    var dActivated = [Float](repeating: 0, count: t * g.mlpWidth)
    TrainingKernels.linearBackward(
      activated, rows: t, inFeatures: g.mlpWidth, weight: w[.mlpDown], outFeatures: g.dim,
      outputGrad: dy, inputGrad: &dActivated, weightGrad: grads[.mlpDown])
    var dGate = [Float](repeating: 0, count: t * g.mlpWidth)
    var dUp = dGate
    TrainingKernels.swiGLUBackward(
      gate: mlpGate, up: mlpUp, count: t * g.mlpWidth, outputGrad: dActivated, gateGrad: &dGate, upGrad: &dUp)
    var dPostNormed = [Float](repeating: 0, count: t * g.dim)
    TrainingKernels.linearBackward(
      postNormed, rows: t, inFeatures: g.dim, weight: w[.mlpGate], outFeatures: g.mlpWidth,
      outputGrad: dGate, inputGrad: &dPostNormed, weightGrad: grads[.mlpGate])
    TrainingKernels.linearBackward(
      postNormed, rows: t, inFeatures: g.dim, weight: w[.mlpUp], outFeatures: g.mlpWidth,
      outputGrad: dUp, inputGrad: &dPostNormed, weightGrad: grads[.mlpUp])
    TrainingKernels.rmsNormBackward(
      afterMixer, rows: t, dim: g.dim, weight: w[.postAttentionNorm], savedInverseRMS: postInverseRMS,
      outputGrad: dPostNormed, inputGrad: &dAfterMixer,
      weightGrad: grads[.postAttentionNorm])

    // x1 = x + out_proj(gated): dx = dx1, then the mixer branch.
    var dx = dAfterMixer
    var dGated = [Float](repeating: 0, count: t * g.queryWidth)
    TrainingKernels.linearBackward(
      gated, rows: t, inFeatures: g.queryWidth, weight: w[.outputProjection], outFeatures: g.dim,
      outputGrad: dAfterMixer, inputGrad: &dGated,
      weightGrad: grads[.outputProjection])
    var dHeadNormed = [Float](repeating: 0, count: t * g.queryWidth)
    var dOutputGate = dHeadNormed
    TrainingKernels.sigmoidGateBackward(
      headNormed, gate: mixer.outputGate, count: t * g.queryWidth, outputGrad: dGated,
      inputGrad: &dHeadNormed, gateGrad: &dOutputGate)
    var dCellOutput = [Float](repeating: 0, count: t * g.queryWidth)
    TrainingKernels.headLayerNormBackward(
      cellOutput, rows: t, heads: g.heads, headDim: g.headDim, weight: w[.headNorm],
      savedMean: headMean, savedInverseStd: headInverseStd, outputGrad: dHeadNormed,
      inputGrad: &dCellOutput, weightGrad: grads[.headNorm])
    let dh = Tensor(shape: g.cellShape, data: g.toCell(dCellOutput, width: g.queryWidth, headsPerSource: 1))
    let cell = MLSTMCell.parallelBackward(
      q: mixer.cellQuery, k: mixer.cellKey, v: mixer.cellValue, i: mixer.cellInputGate,
      f: mixer.cellForgetGate, dh: dh)
    mixer.backward(
      x: input, weights: w, geometry: g, dQuery: cell.dq, dKey: cell.dk, dValue: cell.dv,
      dInputGate: cell.di, dForgetGate: cell.df, dOutputGate: dOutputGate, grads: grads,
      inputGrad: &dx)
    return dx
  }
}
