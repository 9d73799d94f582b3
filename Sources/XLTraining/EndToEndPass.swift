import Foundation
import XLModels
import XLTensors

/// Stage 3: the whole student on the batch's ids (parallel cell form in every layer), its
/// loss against the next ids and the teacher's logits, and the backward pass to every
/// parameter, embedding and `lm_head` included.
enum EndToEndPass {
  struct Losses {
    var crossEntropy: Float
    var kl: Float
    var total: Float { crossEntropy + kl }
  }

  /// ids (B·S) row-major, teacherLogits (B·S, V). Adds gradients into `store` when asked.
  static func run(
    ids: [Int32], geometry g: StudentGeometry, configuration c: ModelConfiguration,
    teacherLogits: [Float], store: ParameterStore, gradients: Bool
  ) throws -> Losses {
    let t = g.tokens
    let d = g.dim
    let v = c.vocabularySize
    func value(_ name: String) throws -> [Float] {
      guard let tensor = store.value(name) else { throw TensorError.missingTensor(name) }
      return tensor.data
    }
    let embedding = try value(XLlamaParameterNames.embedding)
    let finalNorm = try value(XLlamaParameterNames.finalNorm)
    let outputProjection = try value(XLlamaParameterNames.outputProjection)

    var hidden = [Float](repeating: 0, count: t * d)
    TrainingKernels.embeddingForward(ids: ids, count: t, table: embedding, vocabSize: v, dim: d, into: &hidden)
    var forwards: [StudentLayerForward?] = []
    var weights: [LayerTensors] = []
    for layer in 0..<c.layerCount {
      let w = try LayerTensors(store: store, layer: layer)
      let forward = StudentLayerForward(x: hidden, weights: w, geometry: g)
      hidden = forward.output
      if gradients {
        forwards.append(forward)
        weights.append(w)
      }
    }
    var normed = [Float](repeating: 0, count: t * d)
    var inverseRMS = [Float](repeating: 0, count: t)
    TrainingKernels.rmsNormForward(
      hidden, rows: t, dim: d, weight: finalNorm, eps: g.normEps, into: &normed, savedInverseRMS: &inverseRMS)
    var logits = [Float](repeating: 0, count: t * v)
    TrainingKernels.linearForward(normed, rows: t, inFeatures: d, weight: outputProjection, outFeatures: v, into: &logits)

    // Row b predicts ids[b, 1...]; its last position has no target.
    var targets = [Int32](repeating: -1, count: t)
    for row in 0..<g.rows {
      for position in 0..<(g.length - 1) { targets[row * g.length + position] = ids[row * g.length + position + 1] }
    }
    var logNormalizer = [Float](repeating: 0, count: t)
    var teacherLogNormalizer = logNormalizer
    var studentLogNormalizer = logNormalizer
    let crossEntropy = TrainingKernels.crossEntropyLoss(
      logits: logits, targets: targets, rows: t, vocabSize: v, savedLogNormalizer: &logNormalizer)
    let kl = TrainingKernels.klDivergenceLoss(
      studentLogits: logits, teacherLogits: teacherLogits, rows: t, vocabSize: v,
      savedStudentLogNormalizer: &studentLogNormalizer, savedTeacherLogNormalizer: &teacherLogNormalizer)
    let losses = Losses(crossEntropy: crossEntropy, kl: kl)
    guard gradients else { return losses }

    var dLogits = [Float](repeating: 0, count: t * v)
    TrainingKernels.crossEntropyLossBackward(
      logits: logits, targets: targets, rows: t, vocabSize: v, savedLogNormalizer: logNormalizer,
      logitsGrad: &dLogits)
    TrainingKernels.klDivergenceLossBackward(
      studentLogits: logits, teacherLogits: teacherLogits, rows: t, vocabSize: v,
      savedStudentLogNormalizer: studentLogNormalizer, savedTeacherLogNormalizer: teacherLogNormalizer,
      studentLogitsGrad: &dLogits)
    logits = []

    var dNormed = [Float](repeating: 0, count: t * d)
    var dOutputProjection = [Float](repeating: 0, count: v * d)
    TrainingKernels.linearBackward(
      normed, rows: t, inFeatures: d, weight: outputProjection, outFeatures: v, outputGrad: dLogits,
      inputGrad: &dNormed, weightGrad: &dOutputProjection)
    dLogits = []
    add(dOutputProjection, to: XLlamaParameterNames.outputProjection, in: store)
    var dHidden = [Float](repeating: 0, count: t * d)
    var dFinalNorm = [Float](repeating: 0, count: d)
    TrainingKernels.rmsNormBackward(
      hidden, rows: t, dim: d, weight: finalNorm, savedInverseRMS: inverseRMS, outputGrad: dNormed,
      inputGrad: &dHidden, weightGrad: &dFinalNorm)
    add(dFinalNorm, to: XLlamaParameterNames.finalNorm, in: store)

    for layer in stride(from: c.layerCount - 1, through: 0, by: -1) {
      var grads = LayerTensors(zerosLike: weights[layer])
      dHidden = forwards[layer]!.backward(outputGrad: dHidden, weights: weights[layer], grads: &grads)
      forwards[layer] = nil
      grads.addGradients(into: store, layer: layer)
    }

    if !store.frozen.contains(XLlamaParameterNames.embedding) {
      store.withGradient(XLlamaParameterNames.embedding) { table in
        TrainingKernels.embeddingBackward(ids: ids, count: t, outputGrad: dHidden, dim: d, tableGrad: table.baseAddress!)
      }
    }
    return losses
  }

  private static func add(_ gradient: [Float], to name: String, in store: ParameterStore) {
    if store.frozen.contains(name) { return }
    store.withGradient(name) { target in
      for index in target.indices { target[index] += gradient[index] }
    }
  }
}
