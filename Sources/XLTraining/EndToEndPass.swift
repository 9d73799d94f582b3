import CKernels
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

  /// ids (B·S) row-major, teacherLogits (B·S, V), or nil for the next-token cross-entropy
  /// alone (the KL term is then absent and reported as 0). Adds gradients into `store` when
  /// asked; `lm_head` and the loss run `chunkRows` rows at a time.
  static func run(
    ids: [Int32], geometry g: StudentGeometry, configuration c: ModelConfiguration,
    teacherLogits: [Float]?, store: ParameterStore, gradients: Bool, chunkRows: Int
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
    // Row b predicts ids[b, 1...]; its last position has no target.
    var targets = [Int32](repeating: -1, count: t)
    for row in 0..<g.rows {
      for position in 0..<(g.length - 1) { targets[row * g.length + position] = ids[row * g.length + position + 1] }
    }
    var dNormed = [Float](repeating: 0, count: gradients ? t * d : 0)
    let losses: Losses
    if !gradients {
      losses = headAndLoss(
        normed: normed, targets: targets, teacherLogits: teacherLogits, outputProjection: outputProjection,
        tokens: t, dim: d, vocabularySize: v, chunkRows: chunkRows, normedGrad: nil, outputProjectionGrad: nil)
    } else if store.frozen.contains(XLlamaParameterNames.outputProjection) {
      losses = headAndLoss(
        normed: normed, targets: targets, teacherLogits: teacherLogits, outputProjection: outputProjection,
        tokens: t, dim: d, vocabularySize: v, chunkRows: chunkRows, normedGrad: &dNormed, outputProjectionGrad: nil)
    } else {
      losses = store.withGradient(XLlamaParameterNames.outputProjection) { outputGrad in
        headAndLoss(
          normed: normed, targets: targets, teacherLogits: teacherLogits, outputProjection: outputProjection,
          tokens: t, dim: d, vocabularySize: v, chunkRows: chunkRows, normedGrad: &dNormed, outputProjectionGrad: outputGrad.baseAddress)
      }
    }
    guard gradients else { return losses }

    var dHidden = [Float](repeating: 0, count: t * d)
    var dFinalNorm = [Float](repeating: 0, count: d)
    TrainingKernels.rmsNormBackward(
      hidden, rows: t, dim: d, weight: finalNorm, savedInverseRMS: inverseRMS, outputGrad: dNormed,
      inputGrad: &dHidden, weightGrad: &dFinalNorm)
    add(dFinalNorm, to: XLlamaParameterNames.finalNorm, in: store)

    let buffers = LayerGradientBuffers(sizedLike: weights[0])
    for layer in stride(from: c.layerCount - 1, through: 0, by: -1) {
      let targets = buffers.targets(layer: layer, store: store, parameters: LayerParameter.allCases)
      dHidden = forwards[layer]!.backward(outputGrad: dHidden, weights: weights[layer], grads: targets)
      forwards[layer] = nil
      buffers.add(targets, into: store, layer: layer)
    }

    if !store.frozen.contains(XLlamaParameterNames.embedding) {
      store.withGradient(XLlamaParameterNames.embedding) { table in
        TrainingKernels.embeddingBackward(ids: ids, count: t, outputGrad: dHidden, dim: d, tableGrad: table.baseAddress!)
      }
    }
    return losses
  }

  /// Computes `lm_head`, cross-entropy and KL over T rows, `chunkRows` rows at a time so that
  /// the (rows, V) logits and their gradient stay small. `lm_head`'s weight gradient is
  /// accumulated chunk by chunk.
  ///
  /// normed (T, D), targets (T) with −1 where no token is predicted, teacherLogits (T, V) or nil,
  /// outputProjection (V, D). When `normedGrad` (T, D) is given, adds d(loss)/d(normed) into it
  /// and, when `outputProjectionGrad` (V, D) is given, d(loss)/d(lm_head) into that.
  static func headAndLoss(
    normed: [Float], targets: [Int32], teacherLogits: [Float]?, outputProjection: [Float],
    tokens t: Int, dim d: Int, vocabularySize v: Int, chunkRows: Int,
    normedGrad: UnsafeMutablePointer<Float>?, outputProjectionGrad: UnsafeMutablePointer<Float>?
  ) -> Losses {
    let predicted = targets.filter { $0 >= 0 }.count
    let chunk = max(1, min(chunkRows, t))
    // Both are overwritten chunk by chunk before they are read, so they start uninitialized.
    var logits = [Float](unsafeUninitializedCapacity: chunk * v) { _, count in count = chunk * v }
    var dLogits = [Float](unsafeUninitializedCapacity: normedGrad == nil ? 1 : chunk * v) { buffer, count in
      count = buffer.count
    }
    var rowParts = [(crossEntropy: Double, kl: Double)](repeating: (0, 0), count: chunk)
    var crossEntropySum: Double = 0
    var klSum: Double = 0

    normed.withUnsafeBufferPointer { normed in
    targets.withUnsafeBufferPointer { targets in
    withOptionalBuffer(teacherLogits) { teacherLogits in
    logits.withUnsafeMutableBufferPointer { logitsBuffer in
    dLogits.withUnsafeMutableBufferPointer { dLogitsBuffer in
    rowParts.withUnsafeMutableBufferPointer { rowParts in
      for start in stride(from: 0, to: t, by: chunk) {
        let rows = min(chunk, t - start)
        let rowsNormed = normed.baseAddress! + start * d
        let rowsTargets = targets.baseAddress! + start
        let rowsTeacher = teacherLogits.map { $0 + start * v }
        TrainingKernels.linearForward(
          rowsNormed, rows: rows, inFeatures: d, weight: outputProjection, outFeatures: v,
          into: logitsBuffer.baseAddress!)

        // Rows are independent, so two threads take half the chunk each. The sums run in row
        // order afterwards, which keeps the result independent of the split.
        let (logitsBase, dLogitsBase, partsBase) = (
          logitsBuffer.baseAddress!, normedGrad == nil ? nil : dLogitsBuffer.baseAddress!, rowParts.baseAddress!)
        ElementwiseSplit.run(count: rows, minimumPerThread: 4) { range in
          for row in range {
            let target = rowsTargets[row]
            partsBase[row] = distillationRow(
              student: logitsBase + row * v, teacher: rowsTeacher.map { $0 + row * v }, target: target,
              vocabularySize: v, crossEntropyScale: target >= 0 ? 1 / Float(predicted) : 0, klScale: 1 / Float(t),
              logitsGrad: dLogitsBase.map { $0 + row * v })
          }
        }
        for row in 0..<rows {
          crossEntropySum += rowParts[row].crossEntropy
          klSum += rowParts[row].kl
        }
        guard let normedGrad else { continue }

        TrainingKernels.linearBackward(
          rowsNormed, rows: rows, inFeatures: d, weight: outputProjection, outFeatures: v,
          outputGrad: dLogitsBuffer.baseAddress!, inputGrad: normedGrad + start * d, weightGrad: outputProjectionGrad)
      }
    }}}}}}
    return Losses(
      crossEntropy: predicted == 0 ? 0 : Float(crossEntropySum / Double(predicted)), kl: Float(klSum / Double(t)))
  }

  /// Computes one position's cross-entropy and KL(teacher ‖ student) terms and their logit
  /// gradient in one pass over V after the two log-normalizers, with the vectorized exp of
  /// `xl_distillation_row` (relative error below 1e-6). The separate `TrainingKernels` losses
  /// are the reference that tests compare it with.
  ///
  /// student, teacher: (V) logits, teacher nil for cross-entropy alone; target −1 when the
  /// position predicts nothing. Returns `log Z_s − student[target]` (0 without a target) and
  /// `Σ_v p_v (log p_v − log q_v)` (0 without teacher). When `logitsGrad` (V) is given,
  /// overwrites it with `crossEntropyScale · (q − onehot(target)) + klScale · (q − p)`, the
  /// second term dropped without teacher.
  static func distillationRow(
    student: UnsafePointer<Float>, teacher: UnsafePointer<Float>?, target: Int32, vocabularySize v: Int,
    crossEntropyScale: Float, klScale: Float, logitsGrad: UnsafeMutablePointer<Float>?
  ) -> (crossEntropy: Double, kl: Double) {
    let studentNormalizer = xl_log_sum_exp(student, v)
    var kl: Double = 0
    if let teacher {
      let teacherNormalizer = xl_log_sum_exp(teacher, v)
      kl = xl_distillation_row(
        student, studentNormalizer, teacher, teacherNormalizer, v, crossEntropyScale + klScale, klScale, logitsGrad)
    } else if let logitsGrad {
      _ = xl_distillation_row(student, studentNormalizer, nil, 0, v, crossEntropyScale, 0, logitsGrad)
    }
    guard target >= 0 else { return (0, kl) }
    precondition(Int(target) < v, "target \(target) outside 0..<\(v)")
    logitsGrad?[Int(target)] -= crossEntropyScale
    return (Double(studentNormalizer - student[Int(target)]), kl)
  }

  private static func withOptionalBuffer<R>(_ array: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let array else { return body(nil) }
    return array.withUnsafeBufferPointer { body($0.baseAddress!) }
  }

  private static func add(_ gradient: [Float], to name: String, in store: ParameterStore) {
    if store.frozen.contains(name) { return }
    store.withGradient(name) { target in
      for index in target.indices { target[index] += gradient[index] }
    }
  }
}
