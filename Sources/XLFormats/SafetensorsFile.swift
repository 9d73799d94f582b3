import Foundation
import XLTensors

/// Element types a safetensors header may name.
public enum SafetensorsDType: String, Sendable, CaseIterable {
  case f64 = "F64"
  case f32 = "F32"
  case f16 = "F16"
  case bf16 = "BF16"
  case i64 = "I64"
  case i32 = "I32"
  case i16 = "I16"
  case i8 = "I8"
  case u8 = "U8"
  case bool = "BOOL"

  /// Bytes per element.
  public var byteSize: Int {
    switch self {
    case .f64, .i64: return 8
    case .f32, .i32: return 4
    case .f16, .bf16, .i16: return 2
    case .i8, .u8, .bool: return 1
    }
  }
}

/// One tensor's entry in a safetensors header.
public struct SafetensorsTensorInfo: Sendable, Equatable {
  public var name: String
  public var dtype: SafetensorsDType
  public var shape: [Int]
  /// Byte range relative to the start of the data section (`8 + header length`), as stored in
  /// the header's `data_offsets`.
  public var byteRange: Range<Int>

  /// Number of elements (product of `shape`; 1 for a scalar).
  public var elementCount: Int { shape.reduce(1, *) }
}

/// A memory-mapped safetensors file.
///
/// Layout: an 8-byte little-endian header length `n`, `n` bytes of UTF-8 JSON, then the data
/// section starting at byte `8 + n` (not necessarily aligned). The JSON maps each tensor name
/// to `{"dtype", "shape", "data_offsets": [begin, end]}` with offsets relative to the data
/// section, and may hold a `__metadata__` object of string values.
///
/// The initializer validates every entry: dtype known, byte count equal to elements × dtype
/// size, ranges inside the file and not overlapping. Tensors are converted only when asked for.
public final class SafetensorsFile: WeightMatrixProvider, @unchecked Sendable {
  public let url: URL
  /// The `__metadata__` object (empty when absent).
  public let metadata: [String: String]
  /// Tensor names, sorted.
  public let tensorNames: [String]

  private let file: MappedFile
  private let dataStart: Int
  private let infos: [String: SafetensorsTensorInfo]

  public init(url: URL) throws {
    self.url = url
    let file = try MappedFile(url: url)
    let path = file.path
    self.file = file

    guard file.count >= 8 else {
      throw FormatError.invalidHeader(
        path: path, detail: "file has \(file.count) bytes, fewer than the 8-byte header length")
    }
    let headerLength = file.load(UInt64.self, at: 0)
    guard headerLength <= UInt64(file.count - 8) else {
      throw FormatError.invalidHeader(
        path: path,
        detail: "header length \(headerLength) runs past the end of the file (\(file.count) bytes)")
    }
    dataStart = 8 + Int(headerLength)
    let dataLength = file.count - dataStart

    let headerBytes = Data(file.bytes(8..<dataStart))
    let json: Any
    do {
      json = try JSONSerialization.jsonObject(with: headerBytes)
    } catch {
      throw FormatError.invalidHeader(path: path, detail: "header is not valid JSON: \(error)")
    }
    guard let header = json as? [String: Any] else {
      throw FormatError.invalidHeader(path: path, detail: "header JSON is not an object")
    }

    var metadata: [String: String] = [:]
    var infos: [String: SafetensorsTensorInfo] = [:]
    for (name, value) in header {
      if name == "__metadata__" {
        guard let object = value as? [String: Any] else {
          throw FormatError.invalidMetadata(path: path, key: name, detail: "expected an object")
        }
        for (key, entry) in object {
          guard let text = entry as? String else {
            throw FormatError.invalidMetadata(path: path, key: key, detail: "expected a string value")
          }
          metadata[key] = text
        }
        continue
      }
      infos[name] = try Self.parseEntry(name: name, value: value, dataLength: dataLength, path: path)
    }
    try Self.checkOverlaps(infos.values, path: path)

    self.metadata = metadata
    self.infos = infos
    self.tensorNames = infos.keys.sorted()
  }

  /// Returns the header entry for `name`, or nil when the file has no such tensor.
  public func info(named name: String) -> SafetensorsTensorInfo? { infos[name] }

  /// Converts the tensor `name` to float32. F64, F32, F16 and BF16 are accepted.
  public func tensor(named name: String) throws -> Tensor {
    let info = try requireInfo(name)
    let range = (dataStart + info.byteRange.lowerBound)..<(dataStart + info.byteRange.upperBound)
    defer { file.dropPages(range) }
    let bytes = file.bytes(range)
    let count = info.elementCount
    var values = [Float](repeating: 0, count: count)
    values.withUnsafeMutableBufferPointer { output in
      switch info.dtype {
      case .f32:
        for index in 0..<count {
          output[index] = Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self)))
        }
      case .f16:
        for index in 0..<count {
          output[index] = HalfPrecision.float(fromHalf: UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self)))
        }
      case .bf16:
        for index in 0..<count {
          output[index] = HalfPrecision.float(fromBFloat: UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self)))
        }
      case .f64:
        for index in 0..<count {
          output[index] = Float(Double(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * index, as: UInt64.self))))
        }
      default:
        break
      }
    }
    switch info.dtype {
    case .f32, .f16, .bf16, .f64:
      return Tensor(shape: info.shape, data: values)
    default:
      throw FormatError.unsupportedType(
        path: file.path, tensor: name, type: "\(info.dtype.rawValue) (expected a float type; use integers(named:))")
    }
  }

  /// The raw bits of the BF16 tensor `name`, row-major, in host order.
  public func bfloat16Bits(named name: String) throws -> [UInt16] {
    let info = try requireInfo(name)
    guard info.dtype == .bf16 else {
      throw FormatError.unsupportedType(
        path: file.path, tensor: name, type: "\(info.dtype.rawValue) (expected BF16; use tensor(named:))")
    }
    let range = (dataStart + info.byteRange.lowerBound)..<(dataStart + info.byteRange.upperBound)
    defer { file.dropPages(range) }
    let bytes = file.bytes(range)
    return (0..<info.elementCount).map {
      UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))
    }
  }

  /// The rank-2 tensor `name` as a weight matrix: BF16 tensors keep their bits, other float
  /// types are converted to float32.
  public func weightMatrix(named name: String) throws -> WeightMatrix {
    let info = try requireInfo(name)
    guard info.shape.count == 2 else {
      throw FormatError.invalidTensor(
        path: file.path, tensor: name, detail: "has shape \(info.shape), expected a matrix (rank 2)")
    }
    if info.dtype == .bf16 {
      return WeightMatrix(rows: info.shape[0], columns: info.shape[1], bfloat16: try bfloat16Bits(named: name))
    }
    return WeightMatrix(try tensor(named: name))
  }

  /// Reads the integer tensor `name`, flattened in row-major order. I64, I32, I16, I8, U8 and
  /// BOOL are accepted.
  public func integers(named name: String) throws -> [Int] {
    let info = try requireInfo(name)
    let bytes = file.bytes((dataStart + info.byteRange.lowerBound)..<(dataStart + info.byteRange.upperBound))
    let count = info.elementCount
    switch info.dtype {
    case .i64:
      return (0..<count).map { Int(Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
    case .i32:
      return (0..<count).map { Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
    case .i16:
      return (0..<count).map { Int(Int16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self))) }
    case .i8:
      return (0..<count).map { Int(Int8(bitPattern: bytes[$0])) }
    case .u8, .bool:
      return (0..<count).map { Int(bytes[$0]) }
    default:
      throw FormatError.unsupportedType(
        path: file.path, tensor: name, type: "\(info.dtype.rawValue) (expected an integer type; use tensor(named:))")
    }
  }

  private func requireInfo(_ name: String) throws -> SafetensorsTensorInfo {
    guard let info = infos[name] else { throw FormatError.missingTensor(path: file.path, tensor: name) }
    return info
  }

  private static func parseEntry(name: String, value: Any, dataLength: Int, path: String) throws
    -> SafetensorsTensorInfo
  {
    func invalid(_ detail: String) -> FormatError {
      .invalidTensor(path: path, tensor: name, detail: detail)
    }
    guard let entry = value as? [String: Any] else { throw invalid("entry is not a JSON object") }
    guard let dtypeName = entry["dtype"] as? String else { throw invalid("missing string 'dtype'") }
    guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
      throw FormatError.unsupportedType(path: path, tensor: name, type: dtypeName)
    }
    guard let shapeValues = entry["shape"] as? [Any] else { throw invalid("missing array 'shape'") }
    var shape: [Int] = []
    var elementCount = 1
    for dimensionValue in shapeValues {
      guard let dimension = jsonInteger(dimensionValue), dimension >= 0 else {
        throw invalid("shape \(shapeValues) contains a value that is not a non-negative integer")
      }
      let (product, overflow) = elementCount.multipliedReportingOverflow(by: dimension)
      guard !overflow else { throw invalid("shape \(shapeValues) overflows the element count") }
      elementCount = product
      shape.append(dimension)
    }
    guard let offsetValues = entry["data_offsets"] as? [Any], offsetValues.count == 2,
      let begin = jsonInteger(offsetValues[0]), let end = jsonInteger(offsetValues[1])
    else { throw invalid("'data_offsets' is not an array of two integers") }
    guard begin >= 0, begin <= end else { throw invalid("data_offsets [\(begin), \(end)] are not ordered") }
    guard end <= dataLength else {
      throw invalid("data_offsets [\(begin), \(end)] run past the end of the data section (\(dataLength) bytes)")
    }
    let (expectedBytes, overflow) = elementCount.multipliedReportingOverflow(by: dtype.byteSize)
    guard !overflow, expectedBytes == end - begin else {
      throw invalid(
        "data_offsets [\(begin), \(end)] span \(end - begin) bytes but shape \(shape) of \(dtypeName) needs \(elementCount) × \(dtype.byteSize)")
    }
    return SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, byteRange: begin..<end)
  }

  /// Rejects two non-empty byte ranges that share a byte.
  private static func checkOverlaps(_ infos: some Sequence<SafetensorsTensorInfo>, path: String) throws {
    let sorted = infos.filter { !$0.byteRange.isEmpty }.sorted { $0.byteRange.lowerBound < $1.byteRange.lowerBound }
    for (previous, next) in zip(sorted, sorted.dropFirst())
    where next.byteRange.lowerBound < previous.byteRange.upperBound {
      throw FormatError.invalidTensor(
        path: path, tensor: next.name,
        detail: "data_offsets \(next.byteRange) overlap tensor '\(previous.name)' at \(previous.byteRange)")
    }
  }
}

/// Returns the integer in a JSONSerialization value, or nil when it is not an exact integer.
func jsonInteger(_ value: Any) -> Int? {
  guard let number = value as? NSNumber else { return nil }
  let real = number.doubleValue
  guard real.isFinite, real.rounded() == real else { return nil }
  return Int(number.int64Value)
}
