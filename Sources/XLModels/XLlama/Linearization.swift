import Foundation
import XLTensors

/// Builds an xLlama student from a Llama teacher: every weight the two share is copied, and
/// the new mixer parameters start small.
///
/// Initialization of the new parameters, recorded in the student's `config.json`:
/// - `ogate_preact`, `igate_preact`, `fgate_preact` weights: Xavier-normal scaled by 0.1
///   (standard deviation `0.1 · sqrt(2 / (fan_in + fan_out))`), so gates start close to their
///   biases whatever the input;
/// - input-gate bias 0, so a new token enters the state with weight near one relative to
///   the stabilizer;
/// - forget-gate bias spread evenly over heads from 3 to 6 (σ = 0.95 to 0.9975), so the
///   forget gate starts near one and heads begin with different memory lengths, as xLSTM-7B
///   initializes them;
/// - `multihead_norm` weight ones; `lm_head` a copy of the teacher's (tied) output matrix.
public enum Linearization {
  /// The description written to `config.json` as `gate_initialization`.
  public static let gateInitializationDescription =
    "gate weights xavier_normal*0.1; igate bias 0; fgate bias linspace(3, 6) over heads; multihead_norm ones; seed "

  /// The student's configuration for a teacher's.
  public static func studentConfiguration(for teacher: ModelConfiguration, seed: UInt64) -> ModelConfiguration {
    var c = teacher
    c.modelType = "xllama"
    c.tieWordEmbeddings = false
    c.gateSoftCap = 15
    c.cellEps = 1e-6
    c.chunkSize = 64
    c.gateInitialization = gateInitializationDescription + "\(seed)"
    return c
  }

  /// The student's tensors, named as in xLlama checkpoints, in checkpoint order.
  public static func studentTensors(
    teacher: ModelConfiguration, weights provider: TensorProvider, source: String, seed: UInt64 = 0
  ) throws -> [(name: String, tensor: Tensor)] {
    let student = studentConfiguration(for: teacher, seed: seed)
    try student.validate(source: source)
    let reader = WeightReader(provider: provider, source: source)
    var random = SplitMix64(seed: seed)
    let d = teacher.hiddenSize

    func xavier(_ shape: [Int]) -> Tensor {
      let std = 0.1 * (2 / Float(shape[0] + shape[1])).squareRoot()
      return Tensor(shape: shape, data: (0..<(shape[0] * shape[1])).map { _ in random.nextNormal() * std })
    }
    func copy(_ name: String, _ shape: [Int]) throws -> Tensor {
      Tensor(shape: shape, data: try reader.read(name, shape: shape))
    }

    var result: [(name: String, tensor: Tensor)] = []
    for (name, shape) in XLlamaParameterNames.all(for: student) {
      let tensor: Tensor
      let teacherName = name
        .replacingOccurrences(of: "self_attn.q.", with: "self_attn.q_proj.")
        .replacingOccurrences(of: "self_attn.k.", with: "self_attn.k_proj.")
        .replacingOccurrences(of: "self_attn.v.", with: "self_attn.v_proj.")
        .replacingOccurrences(of: "self_attn.out_proj.", with: "self_attn.o_proj.")
      if name.hasSuffix("ogate_preact.weight") || name.hasSuffix("igate_preact.weight")
        || name.hasSuffix("fgate_preact.weight")
      {
        tensor = xavier(shape)
      } else if name.hasSuffix("igate_preact.bias") {
        tensor = Tensor(zeros: shape)
      } else if name.hasSuffix("fgate_preact.bias") {
        let heads = shape[0]
        tensor = Tensor(shape: shape, data: (0..<heads).map { heads == 1 ? 3 : 3 + 3 * Float($0) / Float(heads - 1) })
      } else if name.hasSuffix("multihead_norm.weight") {
        tensor = Tensor(repeating: 1, shape: shape)
      } else if name == XLlamaParameterNames.outputProjection, !reader.contains("lm_head.weight") {
        guard teacher.tieWordEmbeddings else { throw ModelError.missingTensor(source: source, name: "lm_head.weight") }
        tensor = try copy(XLlamaParameterNames.embedding, [teacher.vocabularySize, d])
      } else {
        tensor = try copy(teacherName, shape)
      }
      result.append((name, tensor))
    }
    return result
  }
}
