import Foundation
import XLModels
import XLTensors

/// The three MOHAWK distillation stages (Bick et al., "Transformers to SSMs", 2024).
public enum MOHAWKStage: Int, Sendable, CaseIterable, Codable {
  case matrixOrientation = 1, hiddenStateAlignment = 2, endToEnd = 3
}

/// Anything that turns a batch into a loss and adds gradients into the store.
public protocol TrainingObjective: AnyObject {
  /// Loss of one batch (`batch.inputs` is (rows, S) token ids; stage 3's cross-entropy uses
  /// the next id within the row as in the reference: logits[:, :-1] against ids[:, 1:]), adding
  /// d(loss)/d(parameter) into `parameters`' gradient buffers (it does not zero them). Frozen
  /// parameters may be skipped.
  func lossAndGradients(batch: TokenBatch, parameters: ParameterStore) throws -> Float
}

/// One MOHAWK stage's loss and its exact gradients for every student parameter, with the
/// teacher run on the same batch. Follows `stage1_loss`, `stage2_loss` and `stage3_loss` of the
/// reference xllama_ref.py; a batch holds B rows of S tokens.
///
/// - Stage 1: `Σ_n mean((Cmix_n(rmsnorm_n(h_n)) − A_n)²)` over all B·NH·S·S elements, with
///   h_n the teacher's input of layer n and A_n its attention probabilities.
/// - Stage 2: `Σ_n (1 / B·S) Σ_tokens ‖layer_n(h_n) − h_{n+1}‖₂`.
/// - Stage 3: next-token cross-entropy averaged over the B·(S−1) predicted tokens plus
///   KL(teacher ‖ student) summed over V and averaged over the B·S positions.
///
/// Layers are independent in stages 1 and 2, so `layerConcurrency` worker threads take one
/// layer each in turn, with OpenBLAS limited to one thread meanwhile. Stage 3 runs layer by
/// layer with OpenBLAS on `blasThreads` threads. Both set OpenBLAS's process-wide thread count.
///
/// The defaults (two layer workers, one OpenBLAS thread per core) measured fastest with
/// `MOHAWKBenchmarkTests` on an idle 2-core AMD EPYC at one row of 512 tokens and SmolLM2-135M
/// shapes: stage 1 at 134 against 120 tok/s with one worker, stage 2 at 88 against 74, and
/// stage 3 at 53 with two OpenBLAS threads against 45 with one.
public final class MOHAWKObjective: TrainingObjective {
  public let stage: MOHAWKStage
  public let teacher: LlamaModel
  public let studentConfiguration: ModelConfiguration
  /// Worker threads over layers in stages 1 and 2 (1 runs the layers in turn).
  public var layerConcurrency: Int
  /// OpenBLAS threads for stage 3 and for stages 1 and 2 when `layerConcurrency` is 1.
  public var blasThreads: Int
  /// Token rows whose logits stage 3 keeps in memory at once: 128 rows of a 49,152-token
  /// vocabulary take 25 MB, where a whole 512-token row would take 100 MB (twice, with the gradient).
  public var logitChunkRows = 128

  public init(stage: MOHAWKStage, teacher: LlamaModel, studentConfiguration: ModelConfiguration) {
    self.stage = stage
    self.teacher = teacher
    var c = studentConfiguration
    c.modelType = "xllama"
    self.studentConfiguration = c
    let cores = ProcessInfo.processInfo.activeProcessorCount
    layerConcurrency = min(2, cores)
    blasThreads = cores
  }

  public func lossAndGradients(batch: TokenBatch, parameters: ParameterStore) throws -> Float {
    try run(batch: batch, parameters: parameters, gradients: true)
  }

  /// Loss only (for validation), no gradients.
  public func loss(batch: TokenBatch, parameters: ParameterStore) throws -> Float {
    try run(batch: batch, parameters: parameters, gradients: false)
  }

  /// Stage 3's loss split into its parts, without gradients (for logging and tests).
  public func endToEndLossParts(batch: TokenBatch, parameters: ParameterStore) throws -> (crossEntropy: Float, kl: Float) {
    let ids = try validated(batch)
    let trace = try teacher.trace(ids: ids.map(Int.init), rows: batch.rows, length: batch.contextLength, includeAttention: false)
    let parts = try EndToEndPass.run(
      ids: ids, geometry: geometry(batch), configuration: studentConfiguration,
      teacherLogits: trace.logits.data, store: parameters, gradients: false, chunkRows: logitChunkRows)
    return (parts.crossEntropy, parts.kl)
  }

  private func geometry(_ batch: TokenBatch) -> StudentGeometry {
    StudentGeometry(configuration: studentConfiguration, rows: batch.rows, length: batch.contextLength)
  }

  private func run(batch: TokenBatch, parameters: ParameterStore, gradients: Bool) throws -> Float {
    let ids = try validated(batch)
    let g = geometry(batch)
    let trace = try teacher.trace(
      ids: ids.map(Int.init), rows: batch.rows, length: batch.contextLength,
      includeAttention: stage == .matrixOrientation, includeLogits: stage == .endToEnd)
    switch stage {
    case .matrixOrientation:
      return try perLayer(parameters: parameters, trainable: LayerParameter.mixingMatrixInputs, gradients: gradients) {
        layer, store, grads in
        try MatrixOrientation.layer(
          layer, hidden: trace.hidden[layer].data, attention: trace.attention[layer].data,
          geometry: g, store: store, grads: grads)
      }
    case .hiddenStateAlignment:
      return try perLayer(parameters: parameters, trainable: LayerParameter.allCases, gradients: gradients) {
        layer, store, grads in
        try HiddenStateAlignment.layer(
          layer, input: trace.hidden[layer].data, target: trace.hidden[layer + 1].data,
          geometry: g, store: store, grads: grads)
      }
    case .endToEnd:
      BLAS.setThreadCount(blasThreads)
      return try EndToEndPass.run(
        ids: ids, geometry: g, configuration: studentConfiguration,
        teacherLogits: trace.logits.data, store: parameters, gradients: gradients,
        chunkRows: logitChunkRows
      ).total
    }
  }

  /// Runs `body` for every layer over `layerConcurrency` threads and returns the sum of the
  /// layer losses. Each thread owns one set of gradient buffers. After each layer it adds them
  /// into the store while holding a lock, and otherwise it only reads the store's values.
  private func perLayer(
    parameters: ParameterStore, trainable: [LayerParameter], gradients: Bool,
    _ body: @escaping @Sendable (Int, ParameterStore, LayerGradientTargets?) throws -> Float
  ) throws -> Float {
    let layerCount = studentConfiguration.layerCount
    let results = LayerResults(count: layerCount)
    let reader = StoreReader(store: parameters)
    let workers = max(1, min(layerConcurrency, layerCount))
    let work: @Sendable (Int) -> Void = { worker in
      var buffers: LayerGradientBuffers?
      for layer in stride(from: worker, to: layerCount, by: workers) {
        results.store(layer, Result {
          guard gradients else { return try body(layer, reader.store, nil) }
          if buffers == nil {
            buffers = LayerGradientBuffers(sizedLike: try LayerTensors(store: reader.store, layer: layer))
          }
          let targets = buffers!.targets(layer: layer, store: reader.store, parameters: trainable)
          let loss = try body(layer, reader.store, targets)
          results.locked { buffers!.add(targets, into: reader.store, layer: layer) }
          return loss
        })
      }
    }
    if workers == 1 {
      BLAS.setThreadCount(blasThreads)
      work(0)
    } else {
      BLAS.setThreadCount(1)
      DispatchQueue.concurrentPerform(iterations: workers, execute: work)
      BLAS.setThreadCount(blasThreads)
    }
    var total: Double = 0
    for layer in 0..<layerCount { total += Double(try results.take(layer).get()) }
    return Float(total)
  }

  /// Checks the batch's size, its ids against the vocabulary and that the teacher and student
  /// agree on the shapes the stages compare, and returns the ids.
  private func validated(_ batch: TokenBatch) throws -> [Int32] {
    let c = studentConfiguration
    let t = teacher.configuration
    let pairs: [(String, Int, Int)] = [
      ("num_hidden_layers", c.layerCount, t.layerCount), ("hidden_size", c.hiddenSize, t.hiddenSize),
      ("vocab_size", c.vocabularySize, t.vocabularySize), ("num_attention_heads", c.headCount, t.headCount),
    ]
    for (key, student, teacherValue) in pairs where student != teacherValue {
      throw TrainingError.invalidConfiguration(
        name: "student \(key)", value: "\(student)", expected: "the teacher's \(teacherValue)")
    }
    guard batch.rows > 0, batch.contextLength > 1, batch.inputs.count == batch.rows * batch.contextLength else {
      throw TrainingError.invalidConfiguration(
        name: "batch", value: "\(batch.inputs.count) ids for \(batch.rows) rows of \(batch.contextLength)",
        expected: "rows × context length ids with rows ≥ 1 and context length ≥ 2")
    }
    for id in batch.inputs where id < 0 || Int(id) >= c.vocabularySize {
      throw TrainingError.tokenOutOfRange(id: Int(id), vocabSize: c.vocabularySize, path: "training batch")
    }
    return batch.inputs
  }
}

/// A store handed to worker threads that only read its values.
private struct StoreReader: @unchecked Sendable {
  let store: ParameterStore
}

/// Per-layer losses written by worker threads, and the lock that serializes their gradient
/// additions into the store.
private final class LayerResults: @unchecked Sendable {
  private var results: [Result<Float, Error>?]
  private let lock = NSLock()

  init(count: Int) { results = Array(repeating: nil, count: count) }

  func locked(_ body: () -> Void) {
    lock.lock()
    body()
    lock.unlock()
  }

  func store(_ layer: Int, _ result: Result<Float, Error>) {
    locked { results[layer] = result }
  }

  func take(_ layer: Int) -> Result<Float, Error> {
    lock.lock()
    defer { lock.unlock() }
    return results[layer]!
  }
}

/// Stage 1 for one layer: the student's mixing matrix against the teacher's attention.
enum MatrixOrientation {
  /// hidden (B, S, D) is the teacher's layer input, attention (B, NH, S, S) its attention map.
  static func layer(
    _ index: Int, hidden: [Float], attention: [Float], geometry g: StudentGeometry,
    store: ParameterStore, grads: LayerGradientTargets?
  ) throws -> Float {
    let w = try LayerTensors(store: store, layer: index)
    let mixer = MixerInputsForward(x: hidden, weights: w, geometry: g, full: false)
    let mixing = MLSTMCell.mixingMatrix(
      q: mixer.cellQuery, k: mixer.cellKey, i: mixer.cellInputGate, f: mixer.cellForgetGate)
    let count = mixing.count
    let loss = TrainingKernels.mseLoss(prediction: mixing.data, target: attention, count: count)
    guard let grads else { return loss }
    var dMixing = [Float](repeating: 0, count: count)
    TrainingKernels.mseLossBackward(prediction: mixing.data, target: attention, count: count, predictionGrad: &dMixing)
    let cell = MLSTMCell.mixingMatrixBackward(
      q: mixer.cellQuery, k: mixer.cellKey, i: mixer.cellInputGate, f: mixer.cellForgetGate,
      dMixing: Tensor(shape: mixing.shape, data: dMixing))
    mixer.backward(
      x: hidden, weights: w, geometry: g, dQuery: cell.dq, dKey: cell.dk, dValue: nil,
      dInputGate: cell.di, dForgetGate: cell.df, dOutputGate: nil, grads: grads, inputGrad: nil)
    return loss
  }
}

/// Stage 2 for one layer: the student layer's output against the teacher layer's output.
enum HiddenStateAlignment {
  /// input and target (B, S, D): the teacher's hidden states before and after layer `index`.
  static func layer(
    _ index: Int, input: [Float], target: [Float], geometry g: StudentGeometry,
    store: ParameterStore, grads: LayerGradientTargets?
  ) throws -> Float {
    let w = try LayerTensors(store: store, layer: index)
    let forward = StudentLayerForward(x: input, weights: w, geometry: g)
    let loss = TrainingKernels.l2AlignmentLoss(prediction: forward.output, target: target, rows: g.tokens, dim: g.dim)
    guard let grads else { return loss }
    var dy = [Float](repeating: 0, count: g.tokens * g.dim)
    TrainingKernels.l2AlignmentLossBackward(
      prediction: forward.output, target: target, rows: g.tokens, dim: g.dim, predictionGrad: &dy)
    _ = forward.backward(outputGrad: dy, weights: w, grads: grads)
    return loss
  }
}
