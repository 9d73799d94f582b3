import Foundation
import Testing
import XLTensors

@testable import XLFormats

@Suite("Safetensors reader")
struct SafetensorsReaderTests {
  @Test("reads f32 f16 bf16 and i64")
  func readsEveryDType() throws {
    let folder = try makeTemporaryFolder()
    let url = folder.appendingPathComponent("mixed.safetensors")
    // F16 1.0 = 0x3C00, -2.0 = 0xC000; BF16 0.5 = 0x3F00, -3.0 = 0xC040.
    let f32 = float32Bytes([1.5, -2.25, 3, 4, 5, 6])
    let f16 = littleEndianBytes([UInt16(0x3C00), 0xC000])
    let bf16 = littleEndianBytes([UInt16(0x3F00), 0xC040])
    let ids = littleEndianBytes([Int64(7), -1, 49_152])
    let header = """
      {"__metadata__":{"format":"pt"},\
      "a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},\
      "b":{"dtype":"F16","shape":[2],"data_offsets":[24,28]},\
      "c":{"dtype":"BF16","shape":[1,2],"data_offsets":[28,32]},\
      "ids":{"dtype":"I64","shape":[3],"data_offsets":[32,56]}}
      """
    try writeRawSafetensors(header: header, data: f32 + f16 + bf16 + ids, to: url)

    let file = try SafetensorsFile(url: url)
    #expect(file.tensorNames == ["a", "b", "c", "ids"])
    #expect(file.metadata == ["format": "pt"])
    #expect(try file.tensor(named: "a") == Tensor(shape: [2, 3], data: [1.5, -2.25, 3, 4, 5, 6]))
    #expect(try file.tensor(named: "b") == Tensor(shape: [2], data: [1, -2]))
    #expect(try file.tensor(named: "c") == Tensor(shape: [1, 2], data: [0.5, -3]))
    #expect(try file.integers(named: "ids") == [7, -1, 49_152])
    let info = try #require(file.info(named: "b"))
    #expect(info.dtype == .f16)
    #expect(info.shape == [2])
    #expect(info.byteRange == 24..<28)
  }

  @Test("unaligned data start")
  func unalignedDataStart() throws {
    let folder = try makeTemporaryFolder()
    let url = folder.appendingPathComponent("unaligned.safetensors")
    // A 61-byte header puts the data at byte 69, which is not a multiple of 4.
    var header = #"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}"#
    while (8 + header.utf8.count) % 4 != 1 { header += " " }
    try writeRawSafetensors(header: header, data: float32Bytes([0.25, -8, 1e-3]), to: url)

    let file = try SafetensorsFile(url: url)
    #expect(try file.tensor(named: "x").data == [0.25, -8, 1e-3])
  }

  @Test("zero-element tensor accepted")
  func zeroElementTensor() throws {
    let folder = try makeTemporaryFolder()
    let url = folder.appendingPathComponent("empty.safetensors")
    let header = """
      {"empty":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},\
      "one":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}
      """
    try writeRawSafetensors(header: header, data: float32Bytes([9]), to: url)

    let file = try SafetensorsFile(url: url)
    #expect(try file.tensor(named: "empty") == Tensor(shape: [0, 4], data: []))
    #expect(try file.tensor(named: "one") == Tensor(shape: [], data: [9]))
  }

  @Test("missing tensor names path and tensor")
  func missingTensor() throws {
    let folder = try makeTemporaryFolder()
    let url = folder.appendingPathComponent("one.safetensors")
    try writeRawSafetensors(
      header: #"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: float32Bytes([1]), to: url)
    let file = try SafetensorsFile(url: url)
    let error = #expect(throws: FormatError.self) { try file.tensor(named: "y") }
    #expect(error == .missingTensor(path: url.path, tensor: "y"))
  }
}

@Suite("Half precision")
struct HalfPrecisionTests {
  @Test("f16 widening matches Float16")
  func halfWidening() {
    #if !(os(macOS) && arch(x86_64))
      var mismatches = 0
      for bits in 0...UInt16.max {
        let expected = Float(Float16(bitPattern: bits))
        let found = HalfPrecision.float(fromHalf: bits)
        if expected.isNaN ? !found.isNaN : expected.bitPattern != found.bitPattern { mismatches += 1 }
      }
      #expect(mismatches == 0)
    #endif
  }

  @Test("f16 narrowing rounds to nearest even")
  func halfNarrowing() {
    #if !(os(macOS) && arch(x86_64))
      var generator = SystemRandomNumberGenerator()
      var mismatches = 0
      let special: [Float] = [0, -0, 65504, 65519.99, 65520, 1e-8, 2.98e-8, 5.96e-8, 6.1e-5, .infinity, -.infinity]
      let random = (0..<200_000).map { _ in Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator)) }
      for value in special + random where !value.isNaN {
        if Float16(value).bitPattern != HalfPrecision.halfBits(from: value) { mismatches += 1 }
      }
      #expect(mismatches == 0)
      #expect(HalfPrecision.float(fromHalf: HalfPrecision.halfBits(from: .nan)).isNaN)
    #endif
  }

  @Test("bf16 narrowing rounds to nearest even")
  func bfloatNarrowing() {
    // 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: ties to the even 1.
    #expect(HalfPrecision.bfloatBits(from: 1 + 0x1p-8) == 0x3F80)
    // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: ties to 1 + 2^-6.
    #expect(HalfPrecision.bfloatBits(from: 1 + 3 * 0x1p-8) == 0x3F82)
    #expect(HalfPrecision.bfloatBits(from: 1 + 0x1p-8 + 0x1p-20) == 0x3F81)
    #expect(HalfPrecision.float(fromBFloat: HalfPrecision.bfloatBits(from: .nan)).isNaN)
  }
}
