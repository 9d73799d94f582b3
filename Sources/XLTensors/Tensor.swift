/// A dense float32 tensor in row-major (PyTorch) layout.
///
/// Models keep their weights and activations in this type; quantized and 16-bit files are
/// converted to float32 when they are read. The element count always equals the product of
/// `shape` (an empty shape is a scalar with one element).
public struct Tensor: Sendable, Equatable {
  public private(set) var shape: [Int]
  public var data: [Float]

  /// Creates a tensor from its elements; `data.count` must equal the product of `shape`.
  public init(shape: [Int], data: [Float]) {
    precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
    precondition(data.count == shape.reduce(1, *),
                 "\(data.count) elements do not fill shape \(shape)")
    self.shape = shape
    self.data = data
  }

  /// A tensor of zeros.
  public init(zeros shape: [Int]) {
    self.init(shape: shape, data: [Float](repeating: 0, count: shape.reduce(1, *)))
  }

  /// A tensor filled with one value.
  public init(repeating value: Float, shape: [Int]) {
    self.init(shape: shape, data: [Float](repeating: value, count: shape.reduce(1, *)))
  }

  public var count: Int { data.count }
  public var rank: Int { shape.count }

  /// The same elements viewed with another shape of equal element count.
  public func reshaped(_ newShape: [Int]) -> Tensor {
    Tensor(shape: newShape, data: data)
  }

  /// Rows `range` of a tensor viewed as (shape[0], rest).
  public func rows(_ range: Range<Int>) -> Tensor {
    precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0])
    let width = shape.dropFirst().reduce(1, *)
    return Tensor(
      shape: [range.count] + shape.dropFirst(),
      data: Array(data[(range.lowerBound * width)..<(range.upperBound * width)]))
  }

  /// The largest absolute element-wise difference to `other` (shapes must match).
  public func maxAbsDifference(_ other: Tensor) -> Float {
    precondition(shape == other.shape, "shape \(shape) differs from \(other.shape)")
    var worst: Float = 0
    for index in 0..<count {
      worst = max(worst, abs(data[index] - other.data[index]))
    }
    return worst
  }
}

/// A source of named weight tensors in Hugging Face naming (`model.layers.0.mlp.up_proj.weight`).
///
/// GGUF files, safetensors checkpoints and in-memory dictionaries all conform, so models load
/// from any of them the same way.
public protocol TensorProvider {
  /// Names of every tensor the source holds.
  var tensorNames: [String] { get }
  /// The tensor called `name`, converted to float32; throws when it is missing or unreadable.
  func tensor(named name: String) throws -> Tensor
}

/// A tensor source that can hand out weight matrices in their stored precision, so that a
/// bfloat16 checkpoint stays bfloat16 in memory instead of being widened to float32.
public protocol WeightMatrixProvider: TensorProvider {
  /// The rank-2 tensor `name` as a weight matrix: bfloat16 storage when the source stores
  /// it so, float32 otherwise. Throws when it is missing, unreadable or not of rank 2.
  func weightMatrix(named name: String) throws -> WeightMatrix
}

/// Tensors held in memory, keyed by name.
public struct TensorDictionary: TensorProvider, Sendable {
  public var tensors: [String: Tensor]

  public init(_ tensors: [String: Tensor]) { self.tensors = tensors }

  public var tensorNames: [String] { tensors.keys.sorted() }

  public func tensor(named name: String) throws -> Tensor {
    guard let tensor = tensors[name] else { throw TensorError.missingTensor(name) }
    return tensor
  }
}

/// Errors about tensor names and shapes.
public enum TensorError: Error, CustomStringConvertible, Equatable {
  case missingTensor(String)
  case shapeMismatch(name: String, expected: [Int], found: [Int])

  public var description: String {
    switch self {
    case .missingTensor(let name):
      return "tensor '\(name)' is missing"
    case .shapeMismatch(let name, let expected, let found):
      return "tensor '\(name)' has shape \(found), expected \(expected)"
    }
  }
}
