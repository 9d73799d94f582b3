import Foundation
import Testing
import XLTensors

@testable import XLFormats

@Suite("Safetensors writer")
struct SafetensorsWriterTests {
  /// Values exactly representable in F16 and BF16 (few mantissa bits, moderate exponents).
  static let exactTensors: [(name: String, tensor: Tensor)] = [
    ("model.embed_tokens.weight", Tensor(shape: [3, 4], data: [0.5, -1, 2, 0, 0.25, -0.125, 3, 4, -8, 16, 1.5, -2.5])),
    ("model.norm.weight", Tensor(shape: [4], data: [1, 1, 0.75, -0.375])),
    ("scalar", Tensor(shape: [], data: [6])),
    ("empty", Tensor(shape: [0, 3], data: [])),
  ]

  @Test("round trip f32 f16 bf16", arguments: [SafetensorsDType.f32, .f16, .bf16])
  func roundTrip(dtype: SafetensorsDType) throws {
    let url = try makeTemporaryFolder().appendingPathComponent("model.safetensors")
    try SafetensorsWriter.write(Self.exactTensors, dtype: dtype, metadata: ["format": "pt"], to: url)

    let file = try SafetensorsFile(url: url)
    #expect(file.metadata == ["format": "pt"])
    #expect(Set(file.tensorNames) == Set(Self.exactTensors.map(\.name)))
    for (name, tensor) in Self.exactTensors {
      #expect(try file.tensor(named: name) == tensor, "tensor \(name) as \(dtype)")
      #expect(file.info(named: name)?.dtype == dtype)
    }
  }

  @Test("f32 round trip is bit exact")
  func roundTripRandomF32() throws {
    let url = try makeTemporaryFolder().appendingPathComponent("random.safetensors")
    let tensor = Tensor(shape: [5, 7], data: (0..<35).map { _ in Float.random(in: -3...3) })
    try SafetensorsWriter.write([("w", tensor)], dtype: .f32, to: url)
    #expect(try SafetensorsFile(url: url).tensor(named: "w") == tensor)
  }

  @Test("tensor reads after dropped pages", arguments: [SafetensorsDType.f32, .bf16])
  func readTwice(dtype: SafetensorsDType) throws {
    // Tensors of several pages each, so that reading one drops whole pages that a second read
    // must fault back in from the file.
    let url = try makeTemporaryFolder().appendingPathComponent("pages.safetensors")
    let first = Tensor(shape: [9, 1000], data: (0..<9000).map { Float($0 % 251) - 125 })
    let second = Tensor(shape: [3, 3001], data: (0..<9003).map { Float($0 % 127) * 0.5 })
    try SafetensorsWriter.write([("a", first), ("b", second)], dtype: dtype, to: url)
    let file = try SafetensorsFile(url: url)
    for _ in 0..<2 {
      #expect(try file.tensor(named: "a") == first)
      #expect(try file.tensor(named: "b") == second)
      #expect(try file.weightMatrix(named: "a").floatValues() == first.data)
    }
  }

  @Test("overwrites the target and leaves no temporary file")
  func overwrites() throws {
    let folder = try makeTemporaryFolder()
    let url = folder.appendingPathComponent("model.safetensors")
    try SafetensorsWriter.write([("a", Tensor(shape: [1], data: [1]))], dtype: .f32, to: url)
    try SafetensorsWriter.write([("b", Tensor(shape: [1], data: [2]))], dtype: .f32, to: url)
    #expect(try SafetensorsFile(url: url).tensorNames == ["b"])
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["model.safetensors"])
  }

  @Test("duplicate name rejected")
  func duplicateName() throws {
    let url = try makeTemporaryFolder().appendingPathComponent("dup.safetensors")
    let tensor = Tensor(shape: [1], data: [1])
    #expect(throws: FormatError.self) {
      try SafetensorsWriter.write([("a", tensor), ("a", tensor)], dtype: .f32, to: url)
    }
  }

  @Test("sharded round trip")
  func shardedRoundTrip() throws {
    let folder = try makeTemporaryFolder()
    // 48 + 16 + 4 + 0 bytes in F32 with at most 50 per shard: [48] and [16, 4, 0].
    let indexURL = try SafetensorsWriter.writeSharded(Self.exactTensors, dtype: .f32, maxShardBytes: 50, to: folder)
    #expect(indexURL.lastPathComponent == "model.safetensors.index.json")

    let sharded = try ShardedSafetensors(indexURL: indexURL)
    #expect(Set(sharded.weightMap.values).count == 2)
    #expect(Set(sharded.tensorNames) == Set(Self.exactTensors.map(\.name)))
    for (name, tensor) in Self.exactTensors {
      #expect(try sharded.tensor(named: name) == tensor, "tensor \(name)")
    }
    let opened = try ShardedSafetensors.openFolder(folder)
    #expect(try opened.tensor(named: "model.norm.weight") == Self.exactTensors[1].tensor)
    #expect(throws: FormatError.self) { try sharded.tensor(named: "absent") }
  }

  @Test("index naming a shard without the tensor")
  func shardWithoutTensor() throws {
    let folder = try makeTemporaryFolder()
    try SafetensorsWriter.write([("a", Tensor(shape: [1], data: [1]))], dtype: .f32,
                                to: folder.appendingPathComponent("one.safetensors"))
    let index = #"{"weight_map":{"a":"one.safetensors","b":"one.safetensors"}}"#
    let indexURL = folder.appendingPathComponent("model.safetensors.index.json")
    try Data(index.utf8).write(to: indexURL)

    let sharded = try ShardedSafetensors(indexURL: indexURL)
    #expect(try sharded.tensor(named: "a").data == [1])
    let error = #expect(throws: FormatError.self) { try sharded.tensor(named: "b") }
    #expect(error?.description.contains("'b'") == true)
  }
}
