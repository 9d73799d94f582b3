import Foundation
import XLModels
import XLTensors

/// Builds the student's parameter store, named as in checkpoints (`XLlamaParameterNames.all`)
/// and in checkpoint order. Throws when a tensor is missing or its shape differs from the
/// configuration's.
public func makeStudentParameterStore(
  from provider: TensorProvider, configuration: ModelConfiguration
) throws -> ParameterStore {
  var c = configuration
  c.modelType = "xllama"
  let store = ParameterStore()
  for (name, shape) in XLlamaParameterNames.all(for: c) {
    let tensor = try provider.tensor(named: name)
    guard tensor.shape == shape else {
      throw TensorError.shapeMismatch(name: name, expected: shape, found: tensor.shape)
    }
    store.add(name, tensor)
  }
  return store
}

/// The fifteen parameters of one student layer, in checkpoint order.
enum LayerParameter: Int, CaseIterable {
  case inputNorm, query, key, value, outputGate, inputGate, inputGateBias, forgetGate,
    forgetGateBias, headNorm, outputProjection, postAttentionNorm, mlpGate, mlpUp, mlpDown

  /// The name after `model.layers.N.`.
  var suffix: String {
    switch self {
    case .inputNorm: return "input_layernorm.weight"
    case .query: return "self_attn.q.weight"
    case .key: return "self_attn.k.weight"
    case .value: return "self_attn.v.weight"
    case .outputGate: return "self_attn.ogate_preact.weight"
    case .inputGate: return "self_attn.igate_preact.weight"
    case .inputGateBias: return "self_attn.igate_preact.bias"
    case .forgetGate: return "self_attn.fgate_preact.weight"
    case .forgetGateBias: return "self_attn.fgate_preact.bias"
    case .headNorm: return "self_attn.multihead_norm.weight"
    case .outputProjection: return "self_attn.out_proj.weight"
    case .postAttentionNorm: return "post_attention_layernorm.weight"
    case .mlpGate: return "mlp.gate_proj.weight"
    case .mlpUp: return "mlp.up_proj.weight"
    case .mlpDown: return "mlp.down_proj.weight"
    }
  }

  /// The parameters stage 1 trains: everything the mixing matrix depends on.
  static let mixingMatrixInputs: [LayerParameter] = [
    .inputNorm, .query, .key, .inputGate, .inputGateBias, .forgetGate, .forgetGateBias,
  ]
}

/// One layer's parameter values read from a store, one flat buffer per `LayerParameter`.
struct LayerTensors {
  var buffers: [[Float]]

  subscript(parameter: LayerParameter) -> [Float] { buffers[parameter.rawValue] }

  /// The current values of layer `layer` from `store` (no copy: arrays share storage).
  init(store: ParameterStore, layer: Int) throws {
    buffers = try LayerParameter.allCases.map { parameter in
      let name = XLlamaParameterNames.layer(layer) + parameter.suffix
      guard let value = store.value(name) else { throw TensorError.missingTensor(name) }
      return value.data
    }
  }
}

/// Gradient destinations of a layer's backward pass: one pointer per `LayerParameter`, nil
/// for a parameter whose gradient is not needed (frozen, or outside the stage). The pointers
/// are valid while the `LayerGradientBuffers` that made them lives.
struct LayerGradientTargets {
  let pointers: [UnsafeMutablePointer<Float>?]

  subscript(parameter: LayerParameter) -> UnsafeMutablePointer<Float>? { pointers[parameter.rawValue] }
}

/// Gradient memory for one layer, reused layer after layer so that a step does not allocate
/// (and page in) a fresh set for each. The memory is owned raw memory, so that a backward pass
/// can hold pointers to all fifteen buffers at once. Layers share shapes, so one set fits all.
final class LayerGradientBuffers {
  private let pointers: [UnsafeMutablePointer<Float>]
  private let counts: [Int]

  /// Buffers sized like the parameters of `values`.
  init(sizedLike values: LayerTensors) {
    counts = LayerParameter.allCases.map { values[$0].count }
    pointers = counts.map { count in
      let pointer = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
      pointer.initialize(repeating: 0, count: max(count, 1))
      return pointer
    }
  }

  deinit {
    for pointer in pointers { pointer.deallocate() }
  }

  /// Zeroes the buffers and returns targets for layer `layer`: `parameters` that `store` does
  /// not freeze get a pointer, the rest nil.
  func targets(layer: Int, store: ParameterStore, parameters: [LayerParameter]) -> LayerGradientTargets {
    var result = [UnsafeMutablePointer<Float>?](repeating: nil, count: LayerParameter.allCases.count)
    for parameter in parameters {
      let name = XLlamaParameterNames.layer(layer) + parameter.suffix
      if store.frozen.contains(name) { continue }
      pointers[parameter.rawValue].update(repeating: 0, count: counts[parameter.rawValue])
      result[parameter.rawValue] = pointers[parameter.rawValue]
    }
    return LayerGradientTargets(pointers: result)
  }

  /// Adds the buffers that `targets` handed out into layer `layer`'s gradients in `store`.
  func add(_ targets: LayerGradientTargets, into store: ParameterStore, layer: Int) {
    for parameter in LayerParameter.allCases {
      guard let source = targets[parameter] else { continue }
      let name = XLlamaParameterNames.layer(layer) + parameter.suffix
      store.withGradient(name) { gradient in
        for index in gradient.indices { gradient[index] += source[index] }
      }
    }
  }
}

/// Sizes of one batch through the student: B rows of S tokens, T = B·S.
struct StudentGeometry {
  let rows: Int
  let length: Int
  let dim: Int
  let heads: Int
  let keyValueHeads: Int
  let headDim: Int
  let mlpWidth: Int
  let normEps: Float
  let softCap: Float

  var tokens: Int { rows * length }
  var queryWidth: Int { heads * headDim }
  var keyWidth: Int { keyValueHeads * headDim }
  var group: Int { heads / keyValueHeads }
  /// Shape of the cell's q, k, v and h: (B, NH, S, DH).
  var cellShape: [Int] { [rows, heads, length, headDim] }
  /// Shape of the cell's gates: (B, NH, S).
  var gateShape: [Int] { [rows, heads, length] }

  init(configuration c: ModelConfiguration, rows: Int, length: Int) {
    self.rows = rows
    self.length = length
    dim = c.hiddenSize
    heads = c.headCount
    keyValueHeads = c.keyValueHeadCount
    headDim = c.headDim
    mlpWidth = c.intermediateSize
    normEps = c.rmsNormEps
    softCap = c.gateSoftCap
  }

  /// Copies token-major columns into the cell layout: source (T, width), where head h reads
  /// columns `(h / headsPerSource) · DH ..< +DH` → (B, NH, S, DH).
  func toCell(_ source: [Float], width: Int, headsPerSource: Int) -> [Float] {
    var result = [Float](repeating: 0, count: tokens * queryWidth)
    let (s, dh) = (length, headDim)
    source.withUnsafeBufferPointer { src in
      result.withUnsafeMutableBufferPointer { dst in
        for b in 0..<rows {
          for h in 0..<heads {
            let column = (h / headsPerSource) * dh
            for t in 0..<s {
              let from = src.baseAddress! + (b * s + t) * width + column
              let to = dst.baseAddress! + ((b * heads + h) * s + t) * dh
              to.update(from: from, count: dh)
            }
          }
        }
      }
    }
    return result
  }

  /// Adds a cell-layout gradient (B, NH, S, DH) back into token-major columns (T, width),
  /// summing the heads that share a source head (the transpose of `toCell`).
  func addFromCell(_ cell: [Float], into target: inout [Float], width: Int, headsPerSource: Int) {
    let (s, dh) = (length, headDim)
    cell.withUnsafeBufferPointer { src in
      target.withUnsafeMutableBufferPointer { dst in
        for b in 0..<rows {
          for h in 0..<heads {
            let column = (h / headsPerSource) * dh
            for t in 0..<s {
              let from = src.baseAddress! + ((b * heads + h) * s + t) * dh
              let to = dst.baseAddress! + (b * s + t) * width + column
              for j in 0..<dh { to[j] += from[j] }
            }
          }
        }
      }
    }
  }

  /// (T, NH) → (B, NH, S).
  func gatesToCell(_ source: [Float]) -> [Float] {
    var result = [Float](repeating: 0, count: tokens * heads)
    for b in 0..<rows {
      for h in 0..<heads {
        for t in 0..<length { result[(b * heads + h) * length + t] = source[(b * length + t) * heads + h] }
      }
    }
    return result
  }

  /// (B, NH, S) → (T, NH).
  func gatesFromCell(_ source: [Float]) -> [Float] {
    var result = [Float](repeating: 0, count: tokens * heads)
    for b in 0..<rows {
      for h in 0..<heads {
        for t in 0..<length { result[(b * length + t) * heads + h] = source[(b * heads + h) * length + t] }
      }
    }
    return result
  }
}
