import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Token shard files: tokenized training text, one flat run of ids per file.
///
/// Byte layout, all integers little-endian:
/// ```
/// offset  size  field
///  0      4     magic "XLTK" (58 4C 54 4B)
///  4      4     version, UInt32 = 1
///  8      4     bytes per id, UInt32: 2 (uint16, vocabularies ≤ 65536) or 4 (uint32)
/// 12      4     reserved, UInt32 = 0
/// 16      8     count of ids, UInt64
/// 24      …     count ids of the given width
/// ```
/// Every document is followed by the EOS id, so documents are separated by EOS and a shard
/// ends with one. The file size must equal 24 + count · width exactly.
public enum TokenShard {
  public static let magic: [UInt8] = [0x58, 0x4C, 0x54, 0x4B]
  public static let version: UInt32 = 1
  public static let headerSize = 24

  /// Bytes per id for a vocabulary: 2 when every id fits in UInt16, else 4.
  public static func bytesPerId(vocabSize: Int) -> Int { vocabSize <= 65536 ? 2 : 4 }
}

/// Streams ids into a shard file through a bounded buffer. The file is written under a
/// temporary name and appears under its final name only when `finish()` succeeds.
public final class TokenShardWriter {
  public let url: URL
  public let bytesPerId: Int
  public let vocabSize: Int
  public private(set) var count = 0
  private let temporaryURL: URL
  private let handle: FileHandle
  private var buffer: [UInt8] = []
  private let bufferLimit = 1 << 20
  private var finished = false

  public init(url: URL, vocabSize: Int) throws {
    guard vocabSize > 0, vocabSize <= 1 << 32 else {
      throw TrainingError.invalidConfiguration(
        name: "vocabulary size", value: "\(vocabSize)", expected: "1 ... 4294967296")
    }
    self.url = url
    self.vocabSize = vocabSize
    bytesPerId = TokenShard.bytesPerId(vocabSize: vocabSize)
    temporaryURL = AtomicFile.temporaryURL(for: url)
    guard FileManager.default.createFile(atPath: temporaryURL.path, contents: nil) else {
      throw TrainingError.fileOperationFailed(
        path: temporaryURL.path, operation: "create", reason: "could not create the file")
    }
    do {
      handle = try FileHandle(forWritingTo: temporaryURL)
    } catch {
      throw TrainingError.fileOperationFailed(
        path: temporaryURL.path, operation: "open", reason: error.localizedDescription)
    }
    buffer.reserveCapacity(bufferLimit + 64)
    buffer.append(contentsOf: [UInt8](repeating: 0, count: TokenShard.headerSize))
  }

  deinit {
    if !finished {
      try? handle.close()
      try? FileManager.default.removeItem(at: temporaryURL)
    }
  }

  /// Appends ids; each must be in `0..<vocabSize`. `source` names the input in errors.
  public func append(_ ids: [Int], source: String = "") throws {
    for id in ids {
      guard id >= 0, id < vocabSize else {
        throw TrainingError.tokenOutOfRange(id: id, vocabSize: vocabSize, path: source)
      }
      var value = UInt32(id)
      for _ in 0..<bytesPerId {
        buffer.append(UInt8(truncatingIfNeeded: value))
        value >>= 8
      }
    }
    count += ids.count
    if buffer.count >= bufferLimit { try flush() }
  }

  private func flush() throws {
    do {
      try handle.write(contentsOf: buffer)
    } catch {
      throw TrainingError.fileOperationFailed(
        path: temporaryURL.path, operation: "write", reason: error.localizedDescription)
    }
    buffer.removeAll(keepingCapacity: true)
  }

  /// Writes the header, closes the file and moves it to `url`.
  public func finish() throws {
    try flush()
    var header = TokenShard.magic
    for value in [TokenShard.version, UInt32(bytesPerId), 0] {
      withUnsafeBytes(of: value.littleEndian) { header.append(contentsOf: $0) }
    }
    withUnsafeBytes(of: UInt64(count).littleEndian) { header.append(contentsOf: $0) }
    do {
      try handle.seek(toOffset: 0)
      try handle.write(contentsOf: header)
      try handle.synchronize()
      try handle.close()
    } catch {
      throw TrainingError.fileOperationFailed(
        path: temporaryURL.path, operation: "write the header of", reason: error.localizedDescription)
    }
    try AtomicFile.rename(temporaryURL, to: url)
    finished = true
  }
}

/// A read-only, memory-mapped token shard. Ids are read in place; nothing is copied on open.
public final class TokenShardReader: @unchecked Sendable {
  // Sendable: the mapping is read-only and immutable after init, and unmapped only in deinit.
  public let url: URL
  public let count: Int
  public let bytesPerId: Int
  private let base: UnsafeRawPointer
  private let mappedLength: Int

  public init(url: URL) throws {
    self.url = url
    let path = url.path
    let descriptor = open(path, O_RDONLY)
    guard descriptor >= 0 else {
      throw TrainingError.fileOperationFailed(
        path: path, operation: "open", reason: String(cString: strerror(errno)))
    }
    defer { close(descriptor) }
    var status = stat()
    guard fstat(descriptor, &status) == 0 else {
      throw TrainingError.fileOperationFailed(
        path: path, operation: "stat", reason: String(cString: strerror(errno)))
    }
    let size = Int(status.st_size)
    guard size >= TokenShard.headerSize else {
      throw TrainingError.invalidShard(
        path: path, reason: "file has \(size) bytes, shorter than the \(TokenShard.headerSize)-byte header")
    }
    guard let mapping = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0),
          mapping != MAP_FAILED else {
      throw TrainingError.fileOperationFailed(
        path: path, operation: "memory-map", reason: String(cString: strerror(errno)))
    }
    let raw = UnsafeRawPointer(mapping)

    func fail(_ reason: String) -> TrainingError {
      munmap(mapping, size)
      return .invalidShard(path: path, reason: reason)
    }
    let magic = (0..<4).map { raw.load(fromByteOffset: $0, as: UInt8.self) }
    guard magic == TokenShard.magic else {
      throw fail("magic bytes \(magic), expected \(TokenShard.magic) (\"XLTK\")")
    }
    let version = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
    guard version == TokenShard.version else {
      throw fail("version \(version); this reader supports version \(TokenShard.version)")
    }
    let width = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
    guard width == 2 || width == 4 else {
      throw fail("\(width) bytes per id, expected 2 or 4")
    }
    let declared = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
    let available = UInt64(size - TokenShard.headerSize)
    guard declared <= available / UInt64(width), declared * UInt64(width) == available else {
      throw fail("header declares \(declared) ids of \(width) bytes, but \(available) data bytes follow")
    }

    base = raw
    mappedLength = size
    count = Int(declared)
    bytesPerId = width
  }

  deinit { munmap(UnsafeMutableRawPointer(mutating: base), mappedLength) }

  public subscript(index: Int) -> Int {
    precondition(index >= 0 && index < count, "index \(index) outside 0..<\(count)")
    let offset = TokenShard.headerSize + index * bytesPerId
    if bytesPerId == 2 {
      return Int(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }
    return Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
  }

  /// Copies ids `range` into `destination`, which must hold `range.count` elements.
  public func copyIds(_ range: Range<Int>, into destination: UnsafeMutablePointer<Int32>) {
    precondition(range.lowerBound >= 0 && range.upperBound <= count, "range \(range) outside 0..<\(count)")
    for (position, index) in range.enumerated() { destination[position] = Int32(truncatingIfNeeded: self[index]) }
  }

  /// Ids `range` as an array.
  public func ids(_ range: Range<Int>) -> [Int] { range.map { self[$0] } }
}
