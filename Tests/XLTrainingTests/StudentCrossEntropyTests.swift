import Testing
import XLModels
import XLTensors
@testable import XLTraining

/// Stage 3's pass without teacher logits (the student trained on next-token cross-entropy
/// alone, as the PyTorch reference benchmark trains it) against the separate `TrainingKernels`
/// cross-entropy on logits computed layer by layer, on the tiny fixture student.
/// Tolerances: 1e-5 relative on the loss, 1e-5 · max(1, max|b|) on the `lm_head` gradient.
@Suite("Student cross-entropy pass")
struct StudentCrossEntropyTests {
  @Test("loss and lm_head gradient equal the kernels", arguments: [128, 5])
  func crossEntropyOnly(chunkRows: Int) throws {
    guard let fixture = try MOHAWKFixtureTests.load() else { return }
    let store = try fixture.store()
    let c = fixture.studentConfiguration
    let batch = fixture.batch
    let g = StudentGeometry(configuration: c, rows: batch.rows, length: batch.contextLength)
    let (t, d, v) = (g.tokens, g.dim, c.vocabularySize)

    let losses = try EndToEndPass.run(
      ids: batch.inputs, geometry: g, configuration: c, teacherLogits: nil, store: store,
      gradients: true, chunkRows: chunkRows)

    var hidden = [Float](repeating: 0, count: t * d)
    TrainingKernels.embeddingForward(
      ids: batch.inputs, count: t, table: store.value(XLlamaParameterNames.embedding)!.data,
      vocabSize: v, dim: d, into: &hidden)
    for layer in 0..<c.layerCount {
      hidden = StudentLayerForward(x: hidden, weights: try LayerTensors(store: store, layer: layer), geometry: g).output
    }
    var normed = [Float](repeating: 0, count: t * d)
    var inverseRMS = [Float](repeating: 0, count: t)
    TrainingKernels.rmsNormForward(
      hidden, rows: t, dim: d, weight: store.value(XLlamaParameterNames.finalNorm)!.data, eps: g.normEps,
      into: &normed, savedInverseRMS: &inverseRMS)
    let outputProjection = store.value(XLlamaParameterNames.outputProjection)!.data
    var logits = [Float](repeating: 0, count: t * v)
    TrainingKernels.linearForward(normed, rows: t, inFeatures: d, weight: outputProjection, outFeatures: v, into: &logits)
    var normalizers = [Float](repeating: 0, count: t)
    let expected = TrainingKernels.crossEntropyLoss(
      logits: logits, targets: batch.targets, rows: t, vocabSize: v, savedLogNormalizer: &normalizers)
    var dLogits = [Float](repeating: 0, count: t * v)
    TrainingKernels.crossEntropyLossBackward(
      logits: logits, targets: batch.targets, rows: t, vocabSize: v, savedLogNormalizer: normalizers,
      logitsGrad: &dLogits)
    var expectedHeadGrad = [Float](repeating: 0, count: v * d)
    TrainingKernels.linearBackward(
      normed, rows: t, inFeatures: d, weight: outputProjection, outFeatures: v, outputGrad: dLogits,
      inputGrad: nil, weightGrad: &expectedHeadGrad)

    #expect(abs(losses.crossEntropy - expected) <= 1e-5 * abs(expected), "\(losses.crossEntropy) vs \(expected)")
    #expect(losses.kl == 0)
    let headGrad = store.gradient(XLlamaParameterNames.outputProjection)!.data
    let error = MOHAWKFixtureTests.scaledError(headGrad, expectedHeadGrad)
    #expect(error <= 1e-5, "lm_head gradient differs by \(error) scaled")
    #expect(headGrad.contains { $0 != 0 })
  }
}
