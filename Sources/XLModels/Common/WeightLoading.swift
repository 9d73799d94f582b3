import XLTensors

/// Reads named tensors from a provider and checks their shapes, so that a file whose tensors
/// disagree with its configuration fails with the tensor's name.
struct WeightReader {
  let provider: TensorProvider
  let source: String
  let names: Set<String>

  init(provider: TensorProvider, source: String) {
    self.provider = provider
    self.source = source
    self.names = Set(provider.tensorNames)
  }

  func contains(_ name: String) -> Bool { names.contains(name) }

  /// The tensor `name`'s elements, which must have exactly `shape`.
  func read(_ name: String, shape: [Int]) throws -> [Float] {
    guard names.contains(name) else { throw ModelError.missingTensor(source: source, name: name) }
    let tensor = try provider.tensor(named: name)
    guard tensor.shape == shape else {
      throw ModelError.wrongShape(source: source, name: name, expected: shape, found: tensor.shape)
    }
    return tensor.data
  }

  /// The matrix `name`, which must have exactly `shape` (out, in); bfloat16 when the provider
  /// stores it so and can hand it out unwidened, float32 otherwise.
  func readMatrix(_ name: String, shape: [Int]) throws -> WeightMatrix {
    guard names.contains(name) else { throw ModelError.missingTensor(source: source, name: name) }
    precondition(shape.count == 2, "readMatrix takes an (out, in) shape")
    let matrix: WeightMatrix
    if let matrices = provider as? WeightMatrixProvider, let found = try? matrices.weightMatrix(named: name) {
      matrix = found
    } else {
      let tensor = try provider.tensor(named: name)
      guard tensor.shape == shape else {
        throw ModelError.wrongShape(source: source, name: name, expected: shape, found: tensor.shape)
      }
      return WeightMatrix(tensor)
    }
    guard [matrix.rows, matrix.columns] == shape else {
      throw ModelError.wrongShape(source: source, name: name, expected: shape, found: [matrix.rows, matrix.columns])
    }
    return matrix
  }
}
