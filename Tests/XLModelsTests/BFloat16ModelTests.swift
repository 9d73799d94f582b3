import Foundation
import Testing
import XLFormats
import XLTensors
@testable import XLModels

/// Students and teachers loaded from BF16 safetensors keep their matrices in BF16 and compute
/// what float32 copies of the same (rounded) weights compute.
@Suite("BF16 checkpoints")
struct BFloat16ModelTests {
  /// Writes `tensors` as a safetensors file of `dtype` in a fresh temporary folder.
  static func write(_ tensors: [(name: String, tensor: Tensor)], dtype: SafetensorsDType) throws -> SafetensorsFile {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("xllama-bf16-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let url = folder.appendingPathComponent("model.safetensors")
    try SafetensorsWriter.write(tensors, dtype: dtype, to: url)
    return try SafetensorsFile(url: url)
  }

  /// The same tensors widened to float32 (no WeightMatrixProvider, so matrices load float32).
  static func widened(_ file: SafetensorsFile) throws -> TensorDictionary {
    TensorDictionary(Dictionary(uniqueKeysWithValues: try file.tensorNames.map { ($0, try file.tensor(named: $0)) }))
  }

  static let prompt = [5, 77, 130, 9, 250, 31, 31, 300, 2, 64, 199, 17]

  /// Logits (S, V) of a prefill of `prompt` followed by four decode steps fed the prompt's
  /// first tokens: rows 0..<S from the prefill, then one row per step.
  static func logits(_ model: any LanguageModel) throws -> Tensor {
    let session = model.makeSession()
    var rows = try session.append(prompt, logits: .all).data
    for token in prompt.prefix(4) { rows += try session.append([token], logits: .last).data }
    return Tensor(shape: [prompt.count + 4, model.configuration.vocabularySize], data: rows)
  }

  static func argmaxes(_ logits: Tensor) -> [Int] {
    let v = logits.shape[1]
    return (0..<logits.shape[0]).map { row in
      var best = 0
      for j in 0..<v where logits.data[row * v + j] > logits.data[row * v + best] { best = j }
      return best
    }
  }

  @Test("a BF16 student keeps BF16 matrices and matches its widened twin")
  func studentMatchesWidenedTwin() throws {
    let (_, width, heads, keyValueHeads, mlp, tied) = RandomTeachers.shapes[0]
    let teacher = RandomTeachers.configuration(width: width, heads: heads, keyValueHeads: keyValueHeads, mlp: mlp, tied: tied)
    let tensors = try Linearization.studentTensors(
      teacher: teacher, weights: RandomTeachers.weights(teacher, seed: 21), source: "random teacher", seed: 3)
    let configuration = Linearization.studentConfiguration(for: teacher, seed: 3)
    let file = try Self.write(tensors, dtype: .bf16)
    let bf16 = try XLlamaModel(configuration: configuration, weights: file, source: "bf16")
    #expect(bf16.embedding.isBFloat16 && bf16.outputProjection.isBFloat16)
    #expect(bf16.layers.allSatisfy { $0.mixerInput.isBFloat16 && $0.mlpInput.isBFloat16 && $0.downProjection.isBFloat16 })

    // Same rounded weights held as float32: only summation order differs, so the logits agree
    // to 1e-3 (logits are O(1) here).
    let widened = try XLlamaModel(configuration: configuration, weights: try Self.widened(file), source: "widened")
    #expect(!widened.outputProjection.isBFloat16)
    let difference = try Self.logits(bf16).maxAbsDifference(Self.logits(widened))
    #expect(difference < 1e-3, "BF16 and widened logits differ by \(difference)")

    // Against the unrounded float32 student, BF16 rounding moves logits a little: the top-1
    // token must agree on at least 80% of the 16 positions.
    let exact = try XLlamaModel(
      configuration: configuration,
      weights: TensorDictionary(Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0.tensor) })), source: "f32")
    let agreeing = zip(Self.argmaxes(try Self.logits(bf16)), Self.argmaxes(try Self.logits(exact))).filter { $0 == $1 }.count
    #expect(agreeing * 5 >= (Self.prompt.count + 4) * 4, "top-1 agrees on \(agreeing) of \(Self.prompt.count + 4) positions")
  }

  @Test("a BF16 teacher keeps BF16 matrices and matches its widened twin")
  func teacherMatchesWidenedTwin() throws {
    for shapeIndex in [0, 3] {  // tied and untied embeddings
      let (_, width, heads, keyValueHeads, mlp, tied) = RandomTeachers.shapes[shapeIndex]
      let configuration = RandomTeachers.configuration(width: width, heads: heads, keyValueHeads: keyValueHeads, mlp: mlp, tied: tied)
      let weights = RandomTeachers.weights(configuration, seed: 22)
      let file = try Self.write(weights.tensorNames.map { ($0, try weights.tensor(named: $0)) }, dtype: .bf16)
      let bf16 = try LlamaModel(configuration: configuration, weights: file, source: "bf16")
      #expect(bf16.embedding.isBFloat16 && bf16.outputProjection.isBFloat16 && bf16.layers[0].queryProjection.isBFloat16)
      let widened = try LlamaModel(configuration: configuration, weights: try Self.widened(file), source: "widened")
      let difference = try Self.logits(bf16).maxAbsDifference(Self.logits(widened))
      #expect(difference < 1e-3, "BF16 and widened teacher logits differ by \(difference)")
    }
  }

  @Test("an F32 checkpoint loads float32 matrices")
  func float32StaysFloat32() throws {
    let (_, width, heads, keyValueHeads, mlp, tied) = RandomTeachers.shapes[3]
    let configuration = RandomTeachers.configuration(width: width, heads: heads, keyValueHeads: keyValueHeads, mlp: mlp, tied: tied)
    let weights = RandomTeachers.weights(configuration, seed: 23)
    let file = try Self.write(weights.tensorNames.map { ($0, try weights.tensor(named: $0)) }, dtype: .f32)
    let model = try LlamaModel(configuration: configuration, weights: file, source: "f32")
    #expect(!model.embedding.isBFloat16 && !model.layers[0].downProjection.isBFloat16)
    #expect(model.layers[0].downProjection.floatValues() == (try weights.tensor(named: "model.layers.0.mlp.down_proj.weight")).data)
  }
}
