import Foundation
import Testing
import XLFormats
import XLTensors
@testable import XLModels

/// Random-weight Llama teachers of the SmolLM2 family's shapes at reduced depth and
/// vocabulary, linearized into students.
enum RandomTeachers {
  /// (name, width, heads, key/value heads, MLP width, tied embeddings)
  static let shapes: [(String, Int, Int, Int, Int, Bool)] = [
    ("SmolLM2-135M", 576, 9, 3, 1536, true),
    ("SmolLM2-360M", 960, 15, 5, 2560, true),
    ("SmolLM2-1.7B", 2048, 32, 32, 8192, true),
    ("untied GQA 4:1", 256, 8, 2, 512, false),
  ]

  static func configuration(width: Int, heads: Int, keyValueHeads: Int, mlp: Int, tied: Bool) -> ModelConfiguration {
    ModelConfiguration(
      modelType: "llama", hiddenSize: width, intermediateSize: mlp, layerCount: 2, headCount: heads,
      keyValueHeadCount: keyValueHeads, vocabularySize: 384, rmsNormEps: 1e-5, ropeTheta: 100000,
      tieWordEmbeddings: tied, maxPositionEmbeddings: 512)
  }

  static func weights(_ c: ModelConfiguration, seed: UInt64) -> TensorDictionary {
    var random = SplitMix64(seed: seed)
    var tensors: [String: Tensor] = [:]
    func add(_ name: String, _ shape: [Int], scale: Float) {
      tensors[name] = Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in random.nextNormal() * scale })
    }
    func addNorm(_ name: String, _ width: Int) {
      tensors[name] = Tensor(shape: [width], data: (0..<width).map { _ in 1 + 0.1 * random.nextNormal() })
    }
    let d = c.hiddenSize
    let q = c.headCount * c.headDim
    let kv = c.keyValueHeadCount * c.headDim
    let scale = 1 / Float(d).squareRoot()
    add("model.embed_tokens.weight", [c.vocabularySize, d], scale: 1)
    if !c.tieWordEmbeddings { add("lm_head.weight", [c.vocabularySize, d], scale: scale) }
    addNorm("model.norm.weight", d)
    for layer in 0..<c.layerCount {
      let p = "model.layers.\(layer)."
      addNorm(p + "input_layernorm.weight", d)
      addNorm(p + "post_attention_layernorm.weight", d)
      add(p + "self_attn.q_proj.weight", [q, d], scale: scale)
      add(p + "self_attn.k_proj.weight", [kv, d], scale: scale)
      add(p + "self_attn.v_proj.weight", [kv, d], scale: scale)
      add(p + "self_attn.o_proj.weight", [d, q], scale: 1 / Float(q).squareRoot())
      add(p + "mlp.gate_proj.weight", [c.intermediateSize, d], scale: scale)
      add(p + "mlp.up_proj.weight", [c.intermediateSize, d], scale: scale)
      add(p + "mlp.down_proj.weight", [d, c.intermediateSize], scale: 1 / Float(c.intermediateSize).squareRoot())
    }
    return TensorDictionary(tensors)
  }

  static func student(_ c: ModelConfiguration, teacher: TensorDictionary, seed: UInt64 = 3) throws -> XLlamaModel {
    let tensors = try Linearization.studentTensors(teacher: c, weights: teacher, source: "random teacher", seed: seed)
    let studentConfiguration = Linearization.studentConfiguration(for: c, seed: seed)
    return try XLlamaModel(
      configuration: studentConfiguration,
      weights: TensorDictionary(Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0.tensor) })),
      source: "linearized")
  }
}

@Suite("Linearization and the student's forms")
struct StudentTests {
  static let tolerance: Float = 1e-4

  @Test("linearize copies every shared weight", arguments: 0..<RandomTeachers.shapes.count)
  func linearizeCopies(shapeIndex: Int) throws {
    let (_, width, heads, keyValueHeads, mlp, tied) = RandomTeachers.shapes[shapeIndex]
    let c = RandomTeachers.configuration(width: width, heads: heads, keyValueHeads: keyValueHeads, mlp: mlp, tied: tied)
    let teacher = RandomTeachers.weights(c, seed: 11)
    let tensors = Dictionary(uniqueKeysWithValues: try Linearization.studentTensors(teacher: c, weights: teacher, source: "t").map { ($0.name, $0.tensor) })
    let pairs = [
      ("model.layers.1.self_attn.q.weight", "model.layers.1.self_attn.q_proj.weight"),
      ("model.layers.1.self_attn.k.weight", "model.layers.1.self_attn.k_proj.weight"),
      ("model.layers.0.self_attn.v.weight", "model.layers.0.self_attn.v_proj.weight"),
      ("model.layers.0.self_attn.out_proj.weight", "model.layers.0.self_attn.o_proj.weight"),
      ("model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.down_proj.weight"),
      ("model.norm.weight", "model.norm.weight"),
      ("lm_head.weight", tied ? "model.embed_tokens.weight" : "lm_head.weight"),
    ]
    for (studentName, teacherName) in pairs {
      #expect(tensors[studentName] == teacher.tensors[teacherName], "\(studentName)")
    }
    #expect(tensors.count == XLlamaParameterNames.all(for: Linearization.studentConfiguration(for: c, seed: 0)).count)
    let forget = try #require(tensors["model.layers.0.self_attn.fgate_preact.bias"])
    #expect(forget.data.allSatisfy { $0 >= 3 && $0 <= 6 })
    #expect(tensors["model.layers.0.self_attn.multihead_norm.weight"]?.data.allSatisfy { $0 == 1 } == true)
  }

  @Test("chunkwise prefill equals recurrent steps", arguments: 0..<RandomTeachers.shapes.count)
  func prefillEqualsSteps(shapeIndex: Int) throws {
    let (_, width, heads, keyValueHeads, mlp, tied) = RandomTeachers.shapes[shapeIndex]
    let c = RandomTeachers.configuration(width: width, heads: heads, keyValueHeads: keyValueHeads, mlp: mlp, tied: tied)
    let student = try RandomTeachers.student(c, teacher: RandomTeachers.weights(c, seed: 5))
    var random = SplitMix64(seed: 9)
    let ids = (0..<70).map { _ in Int(random.next() % 384) }

    let prefill = try student.makeSession().append(ids, logits: .all)
    let split = student.makeSession()
    var stepped = try split.append(Array(ids[0..<40]), logits: .all).data
    for token in ids[40...] { stepped += try split.append([token], logits: .last).data }
    #expect(relativeDifference(stepped, prefill.data) < Self.tolerance)
  }

  @Test("saved state resumes exactly")
  func savedStateResumes() throws {
    let c = RandomTeachers.configuration(width: 128, heads: 4, keyValueHeads: 2, mlp: 256, tied: true)
    let student = try RandomTeachers.student(c, teacher: RandomTeachers.weights(c, seed: 21))
    let folder = try TestPaths.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let history = [5, 17, 200, 33, 90, 1, 2, 3, 77, 64, 12]
    let continuation = [8, 250, 31]

    let first = student.makeSession()
    _ = try first.append(history, logits: .none)
    let stateURL = folder.appendingPathComponent("state.safetensors")
    try StateFile.write(session: first, tokens: history, to: stateURL)

    let (resumed, tokens, messages) = try StateFile.read(from: stateURL, model: student)
    #expect(messages == nil)
    #expect(tokens == history)
    #expect(resumed.tokenCount == history.count)
    let fromState = try resumed.append(continuation, logits: .all)
    let fromScratch = try student.makeSession().append(history + continuation, logits: .all)
    let v = c.vocabularySize
    #expect(fromState.data == Array(fromScratch.data[(history.count * v)...]) || relativeDifference(fromState.data, Array(fromScratch.data[(history.count * v)...])) < Self.tolerance)

    // Greedy decoding from the restored state picks the same tokens as from a full re-read.
    func greedy(_ session: any ModelSession, first logits: [Float], count: Int) throws -> [Int] {
      var row = logits
      var picked: [Int] = []
      for _ in 0..<count {
        let token = row.indices.max { row[$0] < row[$1] }!
        picked.append(token)
        row = try session.append([token], logits: .last).data
      }
      return picked
    }
    let (again, _, _) = try StateFile.read(from: stateURL, model: student)
    let restoredLogits = try again.append(continuation, logits: .last).data
    let scratch = student.makeSession()
    let scratchLogits = try scratch.append(history + continuation, logits: .last).data
    #expect(try greedy(again, first: restoredLogits, count: 12) == greedy(scratch, first: scratchLogits, count: 12))
  }

  @Test("state of another model shape is rejected")
  func stateShapeMismatch() throws {
    let small = RandomTeachers.configuration(width: 128, heads: 4, keyValueHeads: 2, mlp: 256, tied: true)
    let other = RandomTeachers.configuration(width: 128, heads: 2, keyValueHeads: 2, mlp: 256, tied: true)
    let a = try RandomTeachers.student(small, teacher: RandomTeachers.weights(small, seed: 1))
    let b = try RandomTeachers.student(other, teacher: RandomTeachers.weights(other, seed: 1))
    let folder = try TestPaths.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let url = folder.appendingPathComponent("state.safetensors")
    let session = a.makeSession()
    _ = try session.append([1, 2, 3], logits: .none)
    try StateFile.write(session: session, tokens: [1, 2, 3], to: url)
    #expect(throws: ModelError.self) { _ = try StateFile.read(from: url, model: b) }
  }

  @Test("checkpoint save and load is lossless")
  func checkpointRoundTrip() throws {
    let c = RandomTeachers.configuration(width: 64, heads: 4, keyValueHeads: 2, mlp: 128, tied: true)
    let tensors = try Linearization.studentTensors(teacher: c, weights: RandomTeachers.weights(c, seed: 2), source: "t")
    let folder = try TestPaths.temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let url = folder.appendingPathComponent("model.safetensors")
    try SafetensorsWriter.write(tensors, dtype: .f32, to: url)
    let reread = try SafetensorsFile(url: url)
    for (name, tensor) in tensors { #expect(try reread.tensor(named: name) == tensor, "\(name)") }
  }
}
