import Foundation
import Testing
import XLTensors

@testable import XLFormats

/// Builds GGUF bytes field by field, valid or not.
struct GGUFBytes {
  var bytes: [UInt8] = []

  mutating func u32(_ value: UInt32) { bytes += littleEndianBytes([value]) }
  mutating func u64(_ value: UInt64) { bytes += littleEndianBytes([value]) }
  mutating func string(_ text: String) {
    u64(UInt64(text.utf8.count))
    bytes += Array(text.utf8)
  }

  /// Magic, version 3 and the two counts.
  static func header(tensors: UInt64, kvs: UInt64) -> GGUFBytes {
    var builder = GGUFBytes()
    builder.bytes = Array("GGUF".utf8)
    builder.u32(3)
    builder.u64(tensors)
    builder.u64(kvs)
    return builder
  }

  /// Appends a u32 metadata entry.
  mutating func kvUInt32(_ key: String, _ value: UInt32) {
    string(key)
    u32(4)
    u32(value)
  }

  mutating func tensorInfo(_ name: String, dims: [UInt64], type: UInt32 = 0, offset: UInt64 = 0) {
    string(name)
    u32(UInt32(dims.count))
    for dim in dims { u64(dim) }
    u32(type)
    u64(offset)
  }

  /// Zero padding to `alignment`, then `count` data bytes.
  mutating func data(_ count: Int, alignment: Int = 32) {
    while bytes.count % alignment != 0 { bytes.append(0) }
    bytes += [UInt8](repeating: 0, count: count)
  }

  func write() throws -> URL {
    let url = try makeTemporaryFolder().appendingPathComponent("bad.gguf")
    try Data(bytes).write(to: url)
    return url
  }
}

/// Expects `body` to throw a FormatError whose message names the file and each of `names`.
func expectFormatError(naming names: [String], path: String, _ body: () throws -> Void) {
  do {
    try body()
    Issue.record("expected a FormatError naming \(names)")
  } catch let error as FormatError {
    #expect(error.description.contains(path), "message \(error) should name \(path)")
    for name in names {
      #expect(error.description.contains(name), "message \(error) should name \(name)")
    }
  } catch {
    Issue.record("expected a FormatError, got \(error)")
  }
}

@Suite("GGUF bad input")
struct GGUFBadInputTests {
  @Test("missing file")
  func missingFile() throws {
    let url = try makeTemporaryFolder().appendingPathComponent("absent.gguf")
    let error = #expect(throws: FormatError.self) { try GGUFFile(url: url) }
    #expect(error == .fileNotFound(path: url.path))
  }

  @Test("bad magic")
  func badMagic() throws {
    var builder = GGUFBytes.header(tensors: 0, kvs: 0)
    builder.bytes[0] = UInt8(ascii: "X")
    let url = try builder.write()
    expectFormatError(naming: ["magic"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("unsupported version")
  func badVersion() throws {
    var builder = GGUFBytes()
    builder.bytes = Array("GGUF".utf8)
    builder.u32(1)
    builder.u64(0)
    builder.u64(0)
    let url = try builder.write()
    expectFormatError(naming: ["version 1"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("truncated header")
  func truncatedHeader() throws {
    var builder = GGUFBytes.header(tensors: 0, kvs: 1)
    builder.string("general.name")
    builder.u32(8)
    builder.u64(100)  // A 100-byte string with 3 bytes present.
    builder.bytes += Array("abc".utf8)
    let url = try builder.write()
    expectFormatError(naming: ["general.name"], path: url.path) { _ = try GGUFFile(url: url) }

    let short = try GGUFBytes(bytes: Array("GGUF".utf8) + [3, 0]).write()
    expectFormatError(naming: ["truncated", "version"], path: short.path) { _ = try GGUFFile(url: short) }
  }

  @Test("absurd kv count")
  func absurdKVCount() throws {
    let url = try GGUFBytes.header(tensors: 0, kvs: 1 << 60).write()
    expectFormatError(naming: ["metadata count \(1 << 60)"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("absurd tensor count")
  func absurdTensorCount() throws {
    let url = try GGUFBytes.header(tensors: UInt64.max, kvs: 0).write()
    expectFormatError(naming: ["tensor count"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("absurd array count")
  func absurdArrayCount() throws {
    var builder = GGUFBytes.header(tensors: 0, kvs: 1)
    builder.string("tokenizer.ggml.tokens")
    builder.u32(9)
    builder.u32(8)
    builder.u64(1 << 60)
    let url = try builder.write()
    expectFormatError(naming: ["tokenizer.ggml.tokens", "element count"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("unknown value type")
  func unknownValueType() throws {
    var builder = GGUFBytes.header(tensors: 0, kvs: 1)
    builder.string("odd.key")
    builder.u32(13)
    let url = try builder.write()
    expectFormatError(naming: ["odd.key", "13"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("alignment zero and twelve rejected", arguments: [UInt32(0), 12])
  func badAlignment(alignment: UInt32) throws {
    var builder = GGUFBytes.header(tensors: 0, kvs: 1)
    builder.kvUInt32("general.alignment", alignment)
    let url = try builder.write()
    expectFormatError(naming: ["general.alignment", "\(alignment)"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("alignment of wrong type rejected")
  func alignmentType() throws {
    var builder = GGUFBytes.header(tensors: 0, kvs: 1)
    builder.string("general.alignment")
    builder.u32(10)
    builder.u64(32)
    let url = try builder.write()
    expectFormatError(naming: ["general.alignment", "uint32"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("unknown tensor type")
  func unknownTensorType() throws {
    var builder = GGUFBytes.header(tensors: 1, kvs: 0)
    builder.tensorInfo("blk.0.ffn_up.weight", dims: [4], type: 99)
    builder.data(64)
    let url = try builder.write()
    expectFormatError(naming: ["blk.0.ffn_up.weight", "99"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("tensor data out of bounds")
  func dataOutOfBounds() throws {
    var builder = GGUFBytes.header(tensors: 1, kvs: 0)
    builder.tensorInfo("token_embd.weight", dims: [8, 2])  // 64 bytes of F32, 60 present.
    builder.data(60)
    let url = try builder.write()
    expectFormatError(naming: ["token_embd.weight", "past the end"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("huge offset out of bounds")
  func hugeOffset() throws {
    var builder = GGUFBytes.header(tensors: 1, kvs: 0)
    builder.tensorInfo("w", dims: [1], offset: UInt64(Int.max) / 32 * 32)
    builder.data(4)
    let url = try builder.write()
    expectFormatError(naming: ["'w'", "past the end"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("duplicate tensor name")
  func duplicateTensor() throws {
    var builder = GGUFBytes.header(tensors: 2, kvs: 0)
    builder.tensorInfo("output.weight", dims: [1])
    builder.tensorInfo("output.weight", dims: [1], offset: 32)
    builder.data(64)
    let url = try builder.write()
    expectFormatError(naming: ["output.weight", "twice"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("too many dimensions")
  func tooManyDimensions() throws {
    var builder = GGUFBytes.header(tensors: 1, kvs: 0)
    builder.tensorInfo("w5", dims: [1, 1, 1, 1, 1])
    builder.data(32)
    let url = try builder.write()
    expectFormatError(naming: ["w5", "5 dimensions"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("dimension product overflow")
  func dimensionOverflow() throws {
    var builder = GGUFBytes.header(tensors: 1, kvs: 0)
    builder.tensorInfo("wide", dims: [1 << 32, 1 << 32])
    builder.data(32)
    let url = try builder.write()
    expectFormatError(naming: ["wide", "overflow"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("offset not aligned")
  func misalignedOffset() throws {
    var builder = GGUFBytes.header(tensors: 1, kvs: 0)
    builder.tensorInfo("w", dims: [1], offset: 4)
    builder.data(64)
    let url = try builder.write()
    expectFormatError(naming: ["'w'", "alignment"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("row not whole blocks")
  func partialBlock() throws {
    var builder = GGUFBytes.header(tensors: 1, kvs: 0)
    builder.tensorInfo("q", dims: [20], type: GGMLType.q8_0.rawValue)
    builder.data(64)
    let url = try builder.write()
    expectFormatError(naming: ["'q'", "block size"], path: url.path) { _ = try GGUFFile(url: url) }
  }

  @Test("zero-element tensor accepted")
  func zeroElements() throws {
    var builder = GGUFBytes.header(tensors: 1, kvs: 0)
    builder.tensorInfo("empty", dims: [0, 4])
    builder.data(0)
    let file = try GGUFFile(url: try builder.write())
    #expect(try file.tensor(named: "empty") == Tensor(shape: [4, 0], data: []))
  }

  @Test("undequantizable type named")
  func undequantizable() throws {
    var builder = GGUFBytes.header(tensors: 1, kvs: 0)
    builder.tensorInfo("q5", dims: [32], type: GGMLType.q5_0.rawValue)
    builder.data(22)
    let url = try builder.write()
    let file = try GGUFFile(url: url)
    expectFormatError(naming: ["q5", "Q5_0"], path: url.path) { _ = try file.tensor(named: "q5") }
  }
}

@Suite("Safetensors bad input")
struct SafetensorsBadInputTests {
  func write(header: String, data: [UInt8]) throws -> URL {
    let url = try makeTemporaryFolder().appendingPathComponent("bad.safetensors")
    try writeRawSafetensors(header: header, data: data, to: url)
    return url
  }

  @Test("missing file")
  func missingFile() throws {
    let url = try makeTemporaryFolder().appendingPathComponent("absent.safetensors")
    let error = #expect(throws: FormatError.self) { try SafetensorsFile(url: url) }
    #expect(error == .fileNotFound(path: url.path))
  }

  @Test("header length past the end")
  func headerPastEnd() throws {
    let url = try makeTemporaryFolder().appendingPathComponent("bad.safetensors")
    try Data(littleEndianBytes([UInt64(1000)]) + Array("{}".utf8)).write(to: url)
    expectFormatError(naming: ["header length 1000"], path: url.path) { _ = try SafetensorsFile(url: url) }
  }

  @Test("file shorter than the length field")
  func tooShort() throws {
    let url = try makeTemporaryFolder().appendingPathComponent("bad.safetensors")
    try Data([1, 2, 3]).write(to: url)
    expectFormatError(naming: ["3 bytes"], path: url.path) { _ = try SafetensorsFile(url: url) }
  }

  @Test("invalid JSON")
  func invalidJSON() throws {
    let url = try write(header: #"{"x": {"dtype": "F32""#, data: [])
    expectFormatError(naming: ["JSON"], path: url.path) { _ = try SafetensorsFile(url: url) }
  }

  @Test("unknown dtype")
  func unknownDType() throws {
    let url = try write(header: #"{"w":{"dtype":"F8_E9","shape":[1],"data_offsets":[0,1]}}"#, data: [0])
    expectFormatError(naming: ["'w'", "F8_E9"], path: url.path) { _ = try SafetensorsFile(url: url) }
  }

  @Test("shape and bytes disagree")
  func shapeBytesDisagree() throws {
    let url = try write(header: #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#, data: float32Bytes([1, 2, 3]))
    expectFormatError(naming: ["'w'", "12 bytes"], path: url.path) { _ = try SafetensorsFile(url: url) }
  }

  @Test("range past the end")
  func rangePastEnd() throws {
    let url = try write(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: float32Bytes([1]))
    expectFormatError(naming: ["'w'", "past the end"], path: url.path) { _ = try SafetensorsFile(url: url) }
  }

  @Test("overlapping ranges")
  func overlapping() throws {
    let header = """
      {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},\
      "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}
      """
    let url = try write(header: header, data: float32Bytes([1, 2, 3]))
    expectFormatError(naming: ["'b'", "'a'", "overlap"], path: url.path) { _ = try SafetensorsFile(url: url) }
  }

  @Test("non-string metadata value")
  func metadataValue() throws {
    let url = try write(header: #"{"__metadata__":{"step":3}}"#, data: [])
    expectFormatError(naming: ["step"], path: url.path) { _ = try SafetensorsFile(url: url) }
  }

  @Test("integer read of a float tensor")
  func integerOfFloat() throws {
    let url = try write(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: float32Bytes([1]))
    let file = try SafetensorsFile(url: url)
    expectFormatError(naming: ["'w'", "F32"], path: url.path) { _ = try file.integers(named: "w") }
  }
}
