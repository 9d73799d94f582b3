import Foundation
import Testing
import XLTensors

@testable import XLFormats

@Suite("GGUF writer")
struct GGUFWriterTests {
  static let metadata: [(String, GGUFValue)] = [
    ("general.architecture", .string("llama")),
    ("general.alignment", .uint32(64)),
    ("llama.attention.head_count", .uint32(2)),
    ("u8", .uint8(7)), ("i8", .int8(-7)), ("u16", .uint16(65535)), ("i16", .int16(-1)),
    ("i32", .int32(-5)), ("f32", .float32(1.25)), ("bool", .bool(false)), ("u64", .uint64(.max)),
    ("i64", .int64(.min)), ("f64", .float64(-2.5)),
    ("tokens", .array(elementType: .string, [.string("<s>"), .string("Ġhi")])),
    ("empty", .array(elementType: .float32, [])),
    ("nested", .array(elementType: .array, [.array(elementType: .uint8, [.uint8(1)])])),
  ]

  @Test("round trip of metadata and tensors")
  func roundTrip() throws {
    let url = try makeTemporaryFolder().appendingPathComponent("tiny.gguf")
    let matrix = Tensor(shape: [2, 3], data: [0.5, -1, 2, 4, -0.25, 8])
    let vector = Tensor(shape: [5], data: [1, 2, 3, 4, 5])
    let cube = Tensor(shape: [2, 1, 2], data: [-1, 0.75, 1.5, 3])
    try GGUFWriter.write(
      metadata: Self.metadata,
      tensors: [("m", matrix, .f32), ("v", vector, .f16), ("c", cube, .bf16)], to: url)

    let file = try GGUFFile(url: url)
    #expect(file.alignment == 64)
    #expect(file.metadataKeys == Self.metadata.map(\.0))
    for (key, value) in Self.metadata {
      #expect(file.metadata[key] == value, "metadata \(key)")
    }
    #expect(file.info(named: "m")?.dimensions == [3, 2])
    #expect(file.info(named: "v")?.type == .f16)
    #expect(try file.tensor(named: "m") == matrix)
    #expect(try file.tensor(named: "v") == vector)
    #expect(try file.tensor(named: "c") == cube)
    for info in file.tensorInfos {
      #expect(info.offset % 64 == 0, "offset of \(info.name)")
    }
  }

  @Test("mixed array element rejected")
  func mixedArray() throws {
    let url = try makeTemporaryFolder().appendingPathComponent("bad.gguf")
    #expect(throws: FormatError.self) {
      try GGUFWriter.write(
        metadata: [("mixed", .array(elementType: .int32, [.int32(1), .string("x")]))], tensors: [], to: url)
    }
    #expect(!FileManager.default.fileExists(atPath: url.path))
  }
}
