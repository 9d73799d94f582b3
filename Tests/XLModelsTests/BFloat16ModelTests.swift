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

  /// Reads every tensor widened to float32 into a dictionary, which is no WeightMatrixProvider,
  /// so models built from it hold float32 matrices.
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
    #expect(bf16.embedding.isBFloat16)
    #expect(bf16.outputProjection.isBFloat16)
    #expect(bf16.layers.allSatisfy { $0.mixerInput.isBFloat16 })
    #expect(bf16.layers.allSatisfy { $0.mlpInput.isBFloat16 })
    #expect(bf16.layers.allSatisfy { $0.downProjection.isBFloat16 })

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
      #expect(bf16.embedding.isBFloat16)
      #expect(bf16.outputProjection.isBFloat16)
      #expect(bf16.layers[0].queryProjection.isBFloat16)
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
    #expect(!model.embedding.isBFloat16)
    #expect(!model.layers[0].downProjection.isBFloat16)
    #expect(model.layers[0].downProjection.floatValues() == (try weights.tensor(named: "model.layers.0.mlp.down_proj.weight")).data)
  }
}

/// Tensors rounded to BF16 in memory, handed out as BF16 weight matrices (as a BF16
/// safetensors file would) without writing a file.
struct RoundedProvider: WeightMatrixProvider {
  let tensors: TensorDictionary
  var tensorNames: [String] { tensors.tensorNames }

  func tensor(named name: String) throws -> Tensor {
    let tensor = try tensors.tensor(named: name)
    return Tensor(shape: tensor.shape, data: tensor.data.map { Float(bitPattern: UInt32(WeightMatrix.bfloat16Bits($0)) << 16) })
  }

  func weightMatrix(named name: String) throws -> WeightMatrix {
    let tensor = try tensors.tensor(named: name)
    return WeightMatrix(rows: tensor.shape[0], columns: tensor.shape[1], bfloat16: tensor.data.map(WeightMatrix.bfloat16Bits))
  }
}

@Suite("BF16 SmolLM2", .serialized)
struct BFloat16SmolLM2Tests {
  /// Greedy continuation of `prompt` for `count` tokens, with the logits of each step.
  static func greedy(_ model: any LanguageModel, prompt: [Int], count: Int) throws -> (tokens: [Int], logits: [[Float]]) {
    let session = model.makeSession()
    var logits = try session.append(prompt, logits: .last).data
    var tokens: [Int] = []
    var all: [[Float]] = []
    for _ in 0..<count {
      all.append(logits)
      let next = logits.indices.max { logits[$0] < logits[$1] }!
      tokens.append(next)
      logits = try session.append([next], logits: .last).data
    }
    return (tokens, all)
  }

  /// The BF16 teacher's greedy tokens equal the float32 teacher's for the first 8 steps and
  /// wherever the float32 top-1 leads the runner-up by more than 0.5 before the two diverge.
  @Test("BF16 SmolLM2 teacher and student follow their float32 twins")
  func greedyTokensAgree() throws {
    guard let path = TestPaths.defaultModel else { return }
    let (configuration, weights, tokenizer, _, _) = try ModelLoader.open(path)
    let teacherTensors = TensorDictionary(Dictionary(uniqueKeysWithValues: try weights.tensorNames.map { ($0, try weights.tensor(named: $0)) }))
    let prompt = tokenizer.encode("The capital of France is Paris. The capital of Germany is")
    let teacher = try LlamaModel(configuration: configuration, weights: teacherTensors, source: path)
    let teacherBF16 = try LlamaModel(configuration: configuration, weights: RoundedProvider(tensors: teacherTensors), source: path)
    let exact = try Self.greedy(teacher, prompt: prompt, count: 16)
    let rounded = try Self.greedy(teacherBF16, prompt: prompt, count: 16)
    print("teacher f32 \(exact.tokens)\nteacher bf16 \(rounded.tokens)")
    #expect(Array(exact.tokens.prefix(8)) == Array(rounded.tokens.prefix(8)))
    for step in 0..<16 {
      guard exact.tokens[..<step] == rounded.tokens[..<step] else { break }
      let sorted = exact.logits[step].sorted(by: >)
      if sorted[0] - sorted[1] > 0.5 { #expect(exact.tokens[step] == rounded.tokens[step], "step \(step)") }
    }

    let studentTensors = try Linearization.studentTensors(teacher: configuration, weights: teacherTensors, source: path, seed: 0)
    let studentConfiguration = Linearization.studentConfiguration(for: configuration, seed: 0)
    let studentDictionary = TensorDictionary(Dictionary(uniqueKeysWithValues: studentTensors.map { ($0.name, $0.tensor) }))
    let studentBF16 = try XLlamaModel(configuration: studentConfiguration, weights: RoundedProvider(tensors: studentDictionary), source: "student")
    // The linearized (undistilled) student reacts strongly to rounding its weights (first-step
    // logits move by about 12 of 20 on SmolLM2-135M), so its BF16 twin is compared with a
    // float32 student holding the same rounded weights: same tokens, logits within 1e-3 of the
    // largest |logit|.
    let roundedDictionary = TensorDictionary(Dictionary(uniqueKeysWithValues: try studentDictionary.tensorNames.map {
      ($0, try RoundedProvider(tensors: studentDictionary).tensor(named: $0))
    }))
    let widened = try XLlamaModel(configuration: studentConfiguration, weights: roundedDictionary, source: "student")
    let studentWidened = try Self.greedy(widened, prompt: prompt, count: 8)
    let studentRounded = try Self.greedy(studentBF16, prompt: prompt, count: 8)
    print("student widened \(studentWidened.tokens)\nstudent bf16 \(studentRounded.tokens)")
    #expect(studentWidened.tokens == studentRounded.tokens)
    for (a, b) in zip(studentWidened.logits, studentRounded.logits) {
      let difference = zip(a, b).map { abs($0 - $1) }.max()!
      let scale = a.map(abs).max()!
      #expect(difference <= 1e-3 * scale, "student logits differ by \(difference) (largest |logit| \(scale))")
    }
  }
}
