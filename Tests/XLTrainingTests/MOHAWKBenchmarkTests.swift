import Foundation
import Testing
import XLModels
import XLTensors
@testable import XLTraining

/// Throughput of the MOHAWK stages on a SmolLM2-135M-shaped pair with random weights, one
/// row of `XLLAMA_BENCH_TOKENS` tokens (default 512), for the stages listed in
/// `XLLAMA_BENCH_STAGES` (default `123`), in the product precisions of
/// `XLLAMA_BENCH_PRECISION` (default `float32,bfloat16`). Each figure is the best of two
/// steps after an untimed one. Runs only when `XLLAMA_BENCH` is set, and belongs in a release
/// build:
///
///     XLLAMA_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter MOHAWKBenchmark
@Suite("MOHAWK throughput")
struct MOHAWKBenchmarkTests {
  static var enabled: Bool { ProcessInfo.processInfo.environment["XLLAMA_BENCH"] != nil }

  static func configuration() -> ModelConfiguration {
    ModelConfiguration(
      hiddenSize: 576, intermediateSize: 1536, layerCount: 30, headCount: 9, keyValueHeadCount: 3,
      vocabularySize: 49152, rmsNormEps: 1e-5, ropeTheta: 100000, tieWordEmbeddings: true,
      maxPositionEmbeddings: 8192)
  }

  static func randomTeacher(_ c: ModelConfiguration) -> TensorDictionary {
    var random = SplitMix64(seed: 7)
    func normal(_ shape: [Int]) -> Tensor {
      Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in random.nextNormal() * 0.02 })
    }
    let d = c.hiddenSize
    let q = c.headCount * c.headDim
    let kv = c.keyValueHeadCount * c.headDim
    var tensors: [String: Tensor] = [
      "model.embed_tokens.weight": normal([c.vocabularySize, d]),
      "model.norm.weight": Tensor(repeating: 1, shape: [d]),
    ]
    for layer in 0..<c.layerCount {
      let p = "model.layers.\(layer)."
      tensors[p + "input_layernorm.weight"] = Tensor(repeating: 1, shape: [d])
      tensors[p + "post_attention_layernorm.weight"] = Tensor(repeating: 1, shape: [d])
      tensors[p + "self_attn.q_proj.weight"] = normal([q, d])
      tensors[p + "self_attn.k_proj.weight"] = normal([kv, d])
      tensors[p + "self_attn.v_proj.weight"] = normal([kv, d])
      tensors[p + "self_attn.o_proj.weight"] = normal([d, q])
      tensors[p + "mlp.gate_proj.weight"] = normal([c.intermediateSize, d])
      tensors[p + "mlp.up_proj.weight"] = normal([c.intermediateSize, d])
      tensors[p + "mlp.down_proj.weight"] = normal([d, c.intermediateSize])
    }
    return TensorDictionary(tensors)
  }

  @Test("stage throughput on a 135M-shaped student", .enabled(if: enabled))
  func throughput() throws {
    // As `xllama distill` does, so that the figures are the command's.
    AllocatorTuning.keepFreedMemory()
    let c = Self.configuration()
    let tokens = Int(ProcessInfo.processInfo.environment["XLLAMA_BENCH_TOKENS"] ?? "") ?? 512
    let weights = Self.randomTeacher(c)
    let teacher = try LlamaModel(configuration: c, weights: weights, source: "random")
    let studentTensors = try Linearization.studentTensors(teacher: c, weights: weights, source: "random")
    let studentConfiguration = Linearization.studentConfiguration(for: c, seed: 0)
    let store = try makeStudentParameterStore(
      from: TensorDictionary(Dictionary(uniqueKeysWithValues: studentTensors.map { ($0.name, $0.tensor) })),
      configuration: studentConfiguration)
    var random = SplitMix64(seed: 3)
    let ids = (0..<tokens).map { _ in Int32(random.nextIndex(below: c.vocabularySize)) }
    let batch = TokenBatch(rows: 1, contextLength: tokens, inputs: ids, targets: ids, epoch: 0)
    let optimizer = AdamW()

    func seconds(_ body: () throws -> Void) rethrows -> Double {
      let start = Date()
      try body()
      return Date().timeIntervalSince(start)
    }
    // XLLAMA_BENCH_PRECISION: comma-separated product precisions (default float32,bfloat16;
    // bfloat16 only where the processor has AVX-512 BF16).
    let precisions = (ProcessInfo.processInfo.environment["XLLAMA_BENCH_PRECISION"] ?? "float32,bfloat16")
      .split(separator: ",").compactMap { ProductPrecision(rawValue: String($0)) }
      .filter { $0 == .float32 || BLAS.bfloat16ProductsAvailable }
    defer { BLAS.productPrecision = .float32 }
    for precision in precisions {
      BLAS.productPrecision = precision
      for attention in [false, true] {
        _ = try teacher.trace(ids: ids.map(Int.init), rows: 1, length: tokens, includeAttention: attention)
        let trace = try seconds {
          _ = try teacher.trace(ids: ids.map(Int.init), rows: 1, length: tokens, includeAttention: attention)
        }
        print("\(precision.rawValue) products: teacher trace (attention maps \(attention ? "kept" : "skipped")): \(String(format: "%.2f", trace)) s")
      }

      let stages = ProcessInfo.processInfo.environment["XLLAMA_BENCH_STAGES"] ?? "123"
      for stage in MOHAWKStage.allCases where stages.contains(String(stage.rawValue)) {
        let objective = MOHAWKObjective(stage: stage, teacher: teacher, studentConfiguration: studentConfiguration)
        let settings: [(Int, Int)] = stage == .endToEnd ? [(1, 2), (1, 1)] : [(2, 1), (1, 2)]
        for (workers, blas) in settings {
          objective.layerConcurrency = workers
          objective.blasThreads = blas
          var best = (step: Double.infinity, loss: Double.infinity, gradients: Double.infinity, update: Double.infinity)
          var loss: Float = 0
          // One untimed step first, as the reference's benchmark does: the first step grows
          // the heap and the packing buffers, which later steps reuse.
          for repetition in 0..<3 {
            let lossOnly = try seconds { _ = try objective.loss(batch: batch, parameters: store) }
            store.zeroGradients()
            let gradients = try seconds { loss = try objective.lossAndGradients(batch: batch, parameters: store) }
            let update = seconds { optimizer.update(store, learningRate: 1e-5) }
            if repetition > 0 && gradients + update < best.step { best = (gradients + update, lossOnly, gradients, update) }
          }
          print(
            "\(precision.rawValue) products: stage \(stage.rawValue), \(workers) layer worker(s), \(blas) BLAS thread(s): "
              + String(format: "%.2f s per step (loss and gradients %.2f s, AdamW %.2f s; loss only %.2f s), %.1f tok/s",
                       best.step, best.gradients, best.update, best.loss, Double(tokens) / best.step)
              + ", loss \(loss)")
          #expect(loss.isFinite)
        }
      }

      // The PyTorch reference benchmark's work: the student alone, forward, next-token
      // cross-entropy (no teacher, no KL), backward and AdamW, with two OpenBLAS threads.
      BLAS.setThreadCount(2)
      let geometry = StudentGeometry(configuration: studentConfiguration, rows: 1, length: tokens)
      var studentBest = (step: Double.infinity, gradients: Double.infinity, update: Double.infinity)
      for repetition in 0..<3 {
        store.zeroGradients()
        let gradients = try seconds {
          _ = try EndToEndPass.run(
            ids: ids, geometry: geometry, configuration: studentConfiguration, teacherLogits: nil, store: store,
            gradients: true, chunkRows: 128)
        }
        let update = seconds { optimizer.update(store, learningRate: 1e-5) }
        if repetition > 0 && gradients + update < studentBest.step { studentBest = (gradients + update, gradients, update) }
      }
      print(
        "\(precision.rawValue) products: student step (reference's work: forward, cross-entropy, backward, AdamW): "
          + String(format: "%.2f s, %.1f tok/s (loss and gradients %.2f s, AdamW %.2f s)",
                   studentBest.step, Double(tokens) / studentBest.step, studentBest.gradients, studentBest.update))
    }
  }
}
