import Foundation
import Testing
import XLFormats
import XLTensors

@Suite("Safetensors weight matrices")
struct SafetensorsMatrixTests {
  @Test("BF16 matrix keeps its bits")
  func bfloat16MatrixKeepsBits() throws {
    let folder = try makeTemporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let url = folder.appendingPathComponent("m.safetensors")
    // 1.0, -2.0, 0.5 (BF16 0x3F80, 0xC000, 0x3F00) then 3.0 (0x4040), shape (2, 2).
    let bits: [UInt16] = [0x3F80, 0xC000, 0x3F00, 0x4040]
    try writeRawSafetensors(
      header: #"{"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"v":{"dtype":"BF16","shape":[4],"data_offsets":[8,16]},"f":{"dtype":"F32","shape":[1,2],"data_offsets":[16,24]}}"#,
      data: littleEndianBytes(bits) + littleEndianBytes(bits) + littleEndianBytes([Float(1.5).bitPattern, Float(-4).bitPattern]),
      to: url)
    let file = try SafetensorsFile(url: url)

    let matrix = try file.weightMatrix(named: "w")
    #expect(matrix.isBFloat16)
    #expect(matrix.storage == .bfloat16(AlignedElements(bits)))
    #expect(matrix.floatValues() == [1, -2, 0.5, 3])
    #expect(try file.bfloat16Bits(named: "v") == bits)

    let float32 = try file.weightMatrix(named: "f")
    #expect(!float32.isBFloat16)
    #expect(float32.floatValues() == [1.5, -4])

    #expect(throws: FormatError.self) { try file.weightMatrix(named: "v") }  // rank 1
    #expect(throws: FormatError.self) { try file.bfloat16Bits(named: "f") }  // F32
    #expect(throws: FormatError.self) { try file.weightMatrix(named: "missing") }
  }
}
