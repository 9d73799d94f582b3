import Foundation

/// Creates a fresh temporary folder for one test's files.
func makeTemporaryFolder() throws -> URL {
  let folder = FileManager.default.temporaryDirectory
    .appendingPathComponent("xlformats-tests-\(UUID().uuidString)", isDirectory: true)
  try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
  return folder
}

/// Writes a safetensors file from a raw JSON header and data bytes, without any checks, so
/// tests can build both valid and invalid files.
func writeRawSafetensors(header: String, data: [UInt8], to url: URL) throws {
  let headerBytes = Array(header.utf8)
  var bytes: [UInt8] = []
  withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { bytes.append(contentsOf: $0) }
  bytes += headerBytes
  bytes += data
  try Data(bytes).write(to: url)
}

/// Little-endian bytes of fixed-width values.
func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
  var bytes: [UInt8] = []
  for value in values {
    withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
  }
  return bytes
}

func float32Bytes(_ values: [Float]) -> [UInt8] {
  littleEndianBytes(values.map(\.bitPattern))
}

/// Returns the folder of this test target's resources, found from this file's path.
func resourcesFolder(filePath: String = #filePath) -> URL {
  URL(fileURLWithPath: filePath).deletingLastPathComponent().appendingPathComponent("Resources")
}
