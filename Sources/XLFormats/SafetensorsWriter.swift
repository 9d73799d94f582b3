import Foundation
import XLTensors

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes safetensors files, single or sharded with a Hugging Face `*.index.json`.
///
/// Every file is written to a temporary file in the target's folder and renamed over the
/// target, so a reader never sees a half-written checkpoint. The JSON header is padded with
/// spaces to a multiple of 8 bytes, so the data section starts 8-byte aligned.
public enum SafetensorsWriter {
  /// Writes `tensors` in the given order, converted to `dtype` (`.f32`, `.f16` or `.bf16`;
  /// narrowing rounds to nearest even).
  public static func write(
    _ tensors: [(name: String, tensor: Tensor)], dtype: SafetensorsDType,
    metadata: [String: String] = [:], to url: URL
  ) throws {
    let path = url.path
    guard [.f32, .f16, .bf16].contains(dtype) else {
      throw FormatError.invalidArgument(path: path, detail: "dtype \(dtype.rawValue) is not F32, F16 or BF16")
    }
    var seen = Set<String>()
    var header: [String: Any] = [:]
    var offset = 0
    for (name, tensor) in tensors {
      guard name != "__metadata__" else {
        throw FormatError.invalidArgument(path: path, detail: "'__metadata__' is reserved and cannot name a tensor")
      }
      guard seen.insert(name).inserted else {
        throw FormatError.invalidArgument(path: path, detail: "tensor '\(name)' is listed twice")
      }
      let byteCount = tensor.count * dtype.byteSize
      header[name] = ["dtype": dtype.rawValue, "shape": tensor.shape, "data_offsets": [offset, offset + byteCount]]
      offset += byteCount
    }
    if !metadata.isEmpty { header["__metadata__"] = metadata }

    var headerBytes = Array(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
    while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }

    try writeAtomically(to: url) { handle in
      var prefix: [UInt8] = []
      withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { prefix.append(contentsOf: $0) }
      handle.write(Data(prefix + headerBytes))
      for (_, tensor) in tensors {
        handle.write(encode(tensor.data, as: dtype))
      }
    }
  }

  /// Writes `tensors` into shards of at most `maxShardBytes` bytes of tensor data each
  /// (a single tensor larger than that gets a shard of its own), named
  /// `<baseName>-00001-of-0000N.safetensors`, plus `<baseName>.safetensors.index.json` whose
  /// `weight_map` maps each tensor to its shard. Returns the index's URL.
  @discardableResult
  public static func writeSharded(
    _ tensors: [(name: String, tensor: Tensor)], dtype: SafetensorsDType,
    maxShardBytes: Int, metadata: [String: String] = [:], to folder: URL, baseName: String = "model"
  ) throws -> URL {
    let indexURL = folder.appendingPathComponent("\(baseName).safetensors.index.json")
    guard maxShardBytes > 0 else {
      throw FormatError.invalidArgument(path: indexURL.path, detail: "maxShardBytes is \(maxShardBytes), expected > 0")
    }
    var shards: [[(name: String, tensor: Tensor)]] = [[]]
    var shardBytes = 0
    var totalBytes = 0
    for entry in tensors {
      let byteCount = entry.tensor.count * dtype.byteSize
      if !shards[shards.count - 1].isEmpty && shardBytes + byteCount > maxShardBytes {
        shards.append([])
        shardBytes = 0
      }
      shards[shards.count - 1].append(entry)
      shardBytes += byteCount
      totalBytes += byteCount
    }

    var weightMap: [String: String] = [:]
    for (index, shard) in shards.enumerated() {
      let fileName = String(format: "%@-%05d-of-%05d.safetensors", baseName, index + 1, shards.count)
      try write(shard, dtype: dtype, metadata: metadata, to: folder.appendingPathComponent(fileName))
      for (name, _) in shard { weightMap[name] = fileName }
    }
    let index: [String: Any] = ["metadata": ["total_size": totalBytes], "weight_map": weightMap]
    let indexData = try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
    try writeAtomically(to: indexURL) { $0.write(indexData) }
    return indexURL
  }

  /// Little-endian bytes of `values` in `dtype`.
  static func encode(_ values: [Float], as dtype: SafetensorsDType) -> Data {
    switch dtype {
    case .f16:
      return values.map { HalfPrecision.halfBits(from: $0).littleEndian }.withUnsafeBytes { Data($0) }
    case .bf16:
      return values.map { HalfPrecision.bfloatBits(from: $0).littleEndian }.withUnsafeBytes { Data($0) }
    default:
      return values.map { $0.bitPattern.littleEndian }.withUnsafeBytes { Data($0) }
    }
  }
}

/// Runs `body` on a temporary file next to `url`, then renames it over `url`. On failure the
/// temporary file is removed and the target is left as it was.
func writeAtomically(to url: URL, _ body: (FileHandle) throws -> Void) throws {
  let folder = url.deletingLastPathComponent()
  let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
  guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
    throw FormatError.ioFailed(path: url.path, detail: "cannot create temporary file \(temporary.path)")
  }
  do {
    let handle = try FileHandle(forWritingTo: temporary)
    defer { try? handle.close() }
    try body(handle)
    try handle.synchronize()
  } catch {
    try? FileManager.default.removeItem(at: temporary)
    if error is FormatError { throw error }
    throw FormatError.ioFailed(path: url.path, detail: "write failed: \(error)")
  }
  guard rename(temporary.path, url.path) == 0 else {
    let reason = String(cString: strerror(errno))
    try? FileManager.default.removeItem(at: temporary)
    throw FormatError.ioFailed(path: url.path, detail: "rename from \(temporary.lastPathComponent) failed: \(reason)")
  }
}
