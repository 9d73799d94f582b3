import Foundation
import XLTensors

/// One tensor's entry in a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable {
  public var name: String
  /// Dimensions in ggml order: `dimensions[0]` is the contiguous (innermost) one.
  public var dimensions: [Int]
  public var type: GGMLType
  /// Offset of the data relative to the start of the data section (a multiple of the alignment).
  public var offset: Int
  /// Bytes of data: elements / block size × bytes per block.
  public var byteCount: Int

  /// Number of elements (product of the dimensions).
  public var elementCount: Int { dimensions.reduce(1, *) }
  /// Shape in PyTorch (row-major) order: the ggml dimensions reversed.
  public var shape: [Int] { dimensions.reversed() }
}

/// A memory-mapped GGUF file (versions 2 and 3), exposing tensors under their ggml names.
///
/// Byte layout, all integers little-endian:
///
///     magic       4 bytes "GGUF"
///     version     u32 (2 or 3)
///     tensorCount u64
///     kvCount     u64
///     kvCount ×   key: string; valueType: u32; value
///     tensorCount × name: string; nDims: u32; dims: u64 × nDims; type: u32; offset: u64
///     padding     zeros up to a multiple of the alignment
///     data        tensor data; each tensor at data start + offset
///
/// A string is a u64 byte length then UTF-8 bytes (no terminator). An array value is an
/// element type u32, a u64 count, then the elements. The alignment is `general.alignment`
/// (a u32) when present, else 32; every tensor offset is a multiple of it.
///
/// The header is not trusted: every count and length is checked against the bytes left before
/// anything is allocated, and each tensor's data must lie inside the file.
public final class GGUFFile: TensorProvider, @unchecked Sendable {
  public let url: URL
  public let version: Int
  public let metadata: [String: GGUFValue]
  /// Metadata keys in file order.
  public let metadataKeys: [String]
  /// Tensor entries in file order.
  public let tensorInfos: [GGUFTensorInfo]
  /// Alignment of the data section and of tensor offsets, in bytes.
  public let alignment: Int
  /// Absolute file offset of the data section.
  public let dataStart: Int

  let file: MappedFile
  private let infoIndex: [String: Int]

  /// Alignment used when `general.alignment` is absent.
  public static let defaultAlignment = 32

  public init(url: URL) throws {
    self.url = url
    let file = try MappedFile(url: url)
    self.file = file
    let path = file.path
    var reader = GGUFReader(file: file)

    let magic = try reader.bytes(4, what: "magic")
    guard Array(magic) == Array("GGUF".utf8) else {
      throw FormatError.invalidHeader(path: path, detail: "bad magic \(Array(magic)), expected the bytes of \"GGUF\"")
    }
    let version = try reader.integer(UInt32.self, what: "version")
    guard version == 2 || version == 3 else {
      throw FormatError.invalidHeader(path: path, detail: "unsupported version \(version), expected 2 or 3")
    }
    self.version = Int(version)
    let tensorCount = try reader.count(minimumItemSize: 24, what: "tensor count")
    let kvCount = try reader.count(minimumItemSize: 13, what: "metadata count")

    var metadata: [String: GGUFValue] = [:]
    var keys: [String] = []
    keys.reserveCapacity(kvCount)
    for index in 0..<kvCount {
      let key = try reader.string(what: "key of metadata entry \(index)")
      guard metadata[key] == nil else {
        throw FormatError.invalidMetadata(path: path, key: key, detail: "key appears twice")
      }
      let rawType = try reader.integer(UInt32.self, what: "type of '\(key)'")
      guard let type = GGUFValueType(rawValue: rawType) else {
        throw FormatError.invalidMetadata(path: path, key: key, detail: "unknown value type \(rawType)")
      }
      metadata[key] = try reader.value(of: type, key: key, depth: 0)
      keys.append(key)
    }
    self.metadata = metadata
    self.metadataKeys = keys

    var alignment = Self.defaultAlignment
    if let value = metadata["general.alignment"] {
      guard case .uint32(let declared) = value else {
        throw FormatError.invalidMetadata(path: path, key: "general.alignment", detail: "type \(value.type), expected uint32")
      }
      guard declared != 0, declared % 8 == 0 else {
        throw FormatError.invalidMetadata(
          path: path, key: "general.alignment", detail: "value \(declared), expected a non-zero multiple of 8")
      }
      alignment = Int(declared)
    }
    self.alignment = alignment

    var infos: [GGUFTensorInfo] = []
    infos.reserveCapacity(tensorCount)
    var infoIndex: [String: Int] = [:]
    for index in 0..<tensorCount {
      let info = try reader.tensorInfo(index: index, alignment: alignment)
      guard infoIndex[info.name] == nil else {
        throw FormatError.invalidTensor(path: path, tensor: info.name, detail: "name appears twice")
      }
      infoIndex[info.name] = infos.count
      infos.append(info)
    }

    let (paddedStart, overflow) = reader.offset.addingReportingOverflow(alignment - 1)
    let dataStart = overflow ? Int.max : paddedStart / alignment * alignment
    for info in infos {
      let available = file.count - min(dataStart, file.count)
      guard info.offset <= available, info.byteCount <= available - info.offset else {
        throw FormatError.invalidTensor(
          path: path, tensor: info.name,
          detail: "data at offset \(info.offset) with \(info.byteCount) bytes runs past the end of the data section (\(available) bytes from file offset \(dataStart))")
      }
    }
    self.dataStart = dataStart
    self.tensorInfos = infos
    self.infoIndex = infoIndex
  }

  /// Tensor names in file order (ggml names such as `blk.0.attn_q.weight`).
  public var tensorNames: [String] { tensorInfos.map(\.name) }

  /// Returns the entry for the tensor `name`, or nil when absent.
  public func info(named name: String) -> GGUFTensorInfo? {
    infoIndex[name].map { tensorInfos[$0] }
  }

  /// Calls `body` with the raw bytes of tensor `name`, which are valid only during the call.
  public func withRawBytes<Result>(
    of name: String, _ body: (UnsafeRawBufferPointer) throws -> Result
  ) throws -> Result {
    guard let info = info(named: name) else { throw FormatError.missingTensor(path: file.path, tensor: name) }
    let range = (dataStart + info.offset)..<(dataStart + info.offset + info.byteCount)
    defer { file.dropPages(range) }
    return try body(file.bytes(range))
  }

  /// Dequantizes the tensor `name` to float32, in PyTorch shape (ggml dimensions reversed).
  public func tensor(named name: String) throws -> Tensor {
    guard let info = info(named: name) else { throw FormatError.missingTensor(path: file.path, tensor: name) }
    guard info.type.isDequantizable else {
      throw FormatError.unsupportedType(path: file.path, tensor: name, type: "\(info.type.name) (cannot be dequantized)")
    }
    var values = [Float](repeating: 0, count: info.elementCount)
    try withRawBytes(of: name) { bytes in
      values.withUnsafeMutableBufferPointer { output in
        Dequantize.run(info.type, bytes: bytes, into: output)
      }
    }
    return Tensor(shape: info.shape, data: values)
  }
}

/// A bounds-checked cursor over a GGUF header.
struct GGUFReader {
  let file: MappedFile
  var offset = 0

  /// Nesting limit for arrays of arrays; deeper nesting is rejected rather than recursed into.
  static let maxArrayDepth = 8

  var path: String { file.path }
  var remaining: Int { file.count - offset }

  private func truncated(_ what: String, needed: Int) -> FormatError {
    .invalidHeader(
      path: path, detail: "truncated at byte \(offset) reading \(what): \(needed) bytes needed, \(remaining) left")
  }

  mutating func bytes(_ count: Int, what: String) throws -> UnsafeRawBufferPointer {
    guard count <= remaining else { throw truncated(what, needed: count) }
    defer { offset += count }
    return file.bytes(offset..<(offset + count))
  }

  mutating func integer<T: FixedWidthInteger>(_ type: T.Type, what: String) throws -> T {
    let size = MemoryLayout<T>.size
    guard size <= remaining else { throw truncated(what, needed: size) }
    defer { offset += size }
    return file.load(T.self, at: offset)
  }

  /// Reads a u64 count of items that each take at least `minimumItemSize` bytes. A count that
  /// cannot fit in the bytes left is rejected before anything is allocated.
  mutating func count(minimumItemSize: Int, what: String) throws -> Int {
    let start = offset
    let raw = try integer(UInt64.self, what: what)
    guard raw <= UInt64(remaining / max(minimumItemSize, 1)) else {
      throw FormatError.invalidHeader(
        path: path,
        detail: "\(what) \(raw) at byte \(start) cannot fit in the \(remaining) bytes left")
    }
    return Int(raw)
  }

  mutating func string(what: String) throws -> String {
    let start = offset
    let length = try integer(UInt64.self, what: "length of \(what)")
    guard length <= UInt64(remaining) else {
      throw FormatError.invalidHeader(
        path: path, detail: "\(what): string length \(length) at byte \(start) runs past the end (\(remaining) bytes left)")
    }
    return String(decoding: try bytes(Int(length), what: what), as: UTF8.self)
  }

  mutating func value(of type: GGUFValueType, key: String, depth: Int) throws -> GGUFValue {
    switch type {
    case .uint8: return .uint8(try integer(UInt8.self, what: key))
    case .int8: return .int8(try integer(Int8.self, what: key))
    case .uint16: return .uint16(try integer(UInt16.self, what: key))
    case .int16: return .int16(try integer(Int16.self, what: key))
    case .uint32: return .uint32(try integer(UInt32.self, what: key))
    case .int32: return .int32(try integer(Int32.self, what: key))
    case .float32: return .float32(Float(bitPattern: try integer(UInt32.self, what: key)))
    case .uint64: return .uint64(try integer(UInt64.self, what: key))
    case .int64: return .int64(try integer(Int64.self, what: key))
    case .float64: return .float64(Double(bitPattern: try integer(UInt64.self, what: key)))
    case .bool:
      let byte = try integer(UInt8.self, what: key)
      guard byte <= 1 else {
        throw FormatError.invalidMetadata(path: path, key: key, detail: "bool byte is \(byte), expected 0 or 1")
      }
      return .bool(byte == 1)
    case .string:
      return .string(try string(what: "value of '\(key)'"))
    case .array:
      guard depth < Self.maxArrayDepth else {
        throw FormatError.invalidMetadata(path: path, key: key, detail: "arrays nested deeper than \(Self.maxArrayDepth) levels")
      }
      let rawType = try integer(UInt32.self, what: "element type of '\(key)'")
      guard let elementType = GGUFValueType(rawValue: rawType) else {
        throw FormatError.invalidMetadata(path: path, key: key, detail: "unknown array element type \(rawType)")
      }
      let start = offset
      let count: Int
      do {
        count = try self.count(minimumItemSize: elementType.minimumSize, what: "element count")
      } catch {
        throw FormatError.invalidMetadata(
          path: path, key: key, detail: "array element count at byte \(start) cannot fit in the \(remaining) bytes left")
      }
      var elements: [GGUFValue] = []
      elements.reserveCapacity(count)
      for _ in 0..<count {
        elements.append(try value(of: elementType, key: key, depth: depth + 1))
      }
      return .array(elementType: elementType, elements)
    }
  }

  mutating func tensorInfo(index: Int, alignment: Int) throws -> GGUFTensorInfo {
    let name = try string(what: "name of tensor \(index)")
    func invalid(_ detail: String) -> FormatError { .invalidTensor(path: path, tensor: name, detail: detail) }

    let dimensionCount = try integer(UInt32.self, what: "dimension count of '\(name)'")
    guard dimensionCount <= 4 else { throw invalid("\(dimensionCount) dimensions, at most 4 allowed") }
    var dimensions: [Int] = []
    var elementCount = 1
    for _ in 0..<dimensionCount {
      let raw = try integer(UInt64.self, what: "dimensions of '\(name)'")
      guard let dimension = Int(exactly: raw) else { throw invalid("dimension \(raw) is too large") }
      let (product, overflow) = elementCount.multipliedReportingOverflow(by: dimension)
      guard !overflow else { throw invalid("dimensions \(dimensions + [dimension]) overflow the element count") }
      elementCount = product
      dimensions.append(dimension)
    }

    let rawType = try integer(UInt32.self, what: "type of '\(name)'")
    guard let type = GGMLType(rawValue: rawType) else { throw invalid("unknown ggml type \(rawType)") }
    let rowLength = dimensions.first ?? 1
    guard rowLength % type.blockSize == 0 else {
      throw invalid("first dimension \(rowLength) is not a multiple of the \(type.name) block size \(type.blockSize)")
    }
    let (byteCount, overflow) = (elementCount / type.blockSize).multipliedReportingOverflow(by: type.blockBytes)
    guard !overflow else { throw invalid("byte count of dimensions \(dimensions) overflows") }

    let rawOffset = try integer(UInt64.self, what: "offset of '\(name)'")
    guard let offset = Int(exactly: rawOffset) else { throw invalid("data offset \(rawOffset) is too large") }
    guard offset % alignment == 0 else { throw invalid("data offset \(offset) is not a multiple of the alignment \(alignment)") }
    return GGUFTensorInfo(name: name, dimensions: dimensions, type: type, offset: offset, byteCount: byteCount)
  }
}
