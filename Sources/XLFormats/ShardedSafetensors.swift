import Foundation
import XLTensors

/// A safetensors checkpoint split over several files, described by a Hugging Face index
/// (`model.safetensors.index.json`, whose `weight_map` maps tensor names to shard file names
/// in the index's folder).
///
/// Shards are opened (memory-mapped) the first time one of their tensors is requested.
public final class ShardedSafetensors: WeightMatrixProvider, @unchecked Sendable {
  public let indexURL: URL
  /// Tensor name → shard file name, as listed in the index.
  public let weightMap: [String: String]
  /// Tensor names, sorted.
  public let tensorNames: [String]

  private let lock = NSLock()
  private var openShards: [String: SafetensorsFile] = [:]

  public init(indexURL: URL) throws {
    self.indexURL = indexURL
    let path = indexURL.path
    let data: Data
    do {
      data = try Data(contentsOf: indexURL)
    } catch {
      if !FileManager.default.fileExists(atPath: path) { throw FormatError.fileNotFound(path: path) }
      throw FormatError.ioFailed(path: path, detail: "read failed: \(error)")
    }
    guard let object = try? JSONSerialization.jsonObject(with: data), let index = object as? [String: Any] else {
      throw FormatError.invalidHeader(path: path, detail: "index is not a JSON object")
    }
    guard let map = index["weight_map"] as? [String: Any] else {
      throw FormatError.invalidMetadata(path: path, key: "weight_map", detail: "missing or not an object")
    }
    var weightMap: [String: String] = [:]
    for (name, value) in map {
      guard let fileName = value as? String, !fileName.isEmpty, !fileName.contains("/"), fileName != "..", fileName != "." else {
        throw FormatError.invalidMetadata(
          path: path, key: "weight_map.\(name)", detail: "expected a shard file name in the index's folder, found \(value)")
      }
      weightMap[name] = fileName
    }
    self.weightMap = weightMap
    self.tensorNames = weightMap.keys.sorted()
  }

  /// Opens the checkpoint in `folder`: `model.safetensors.index.json` when present, else
  /// `model.safetensors`.
  public static func openFolder(_ folder: URL) throws -> any TensorProvider {
    let index = folder.appendingPathComponent("model.safetensors.index.json")
    if FileManager.default.fileExists(atPath: index.path) { return try ShardedSafetensors(indexURL: index) }
    return try SafetensorsFile(url: folder.appendingPathComponent("model.safetensors"))
  }

  /// Returns the header entry for `name`, opening its shard, or nil when the index does not list it.
  public func info(named name: String) throws -> SafetensorsTensorInfo? {
    guard weightMap[name] != nil else { return nil }
    return try shard(containing: name).info(named: name)
  }

  public func tensor(named name: String) throws -> Tensor {
    try shard(containing: name).tensor(named: name)
  }

  /// The matrix `name`, keeping BF16 storage, as `SafetensorsFile.weightMatrix(named:)` does.
  public func weightMatrix(named name: String) throws -> WeightMatrix {
    try shard(containing: name).weightMatrix(named: name)
  }

  /// Reads the integer tensor `name`, flattened, as `SafetensorsFile.integers(named:)` does.
  public func integers(named name: String) throws -> [Int] {
    try shard(containing: name).integers(named: name)
  }

  private func shard(containing name: String) throws -> SafetensorsFile {
    guard let fileName = weightMap[name] else {
      throw FormatError.missingTensor(path: indexURL.path, tensor: name)
    }
    lock.lock()
    defer { lock.unlock() }
    let shard: SafetensorsFile
    if let cached = openShards[fileName] {
      shard = cached
    } else {
      shard = try SafetensorsFile(url: indexURL.deletingLastPathComponent().appendingPathComponent(fileName))
      openShards[fileName] = shard
    }
    guard shard.info(named: name) != nil else {
      throw FormatError.invalidTensor(
        path: indexURL.path, tensor: name, detail: "the index places it in \(fileName), which does not contain it")
    }
    return shard
  }
}
