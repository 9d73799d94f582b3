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
}
