import Foundation
import XLTensors

/// Writes GGUF version 3 files (layout documented on `GGUFFile`), so tests and tools can make
/// small models.
///
/// Tensors are given in PyTorch shape and stored with ggml dimensions (the shape reversed).
/// The alignment is `general.alignment` when the metadata contains it as a `.uint32`, else 32.
/// The file is written to a temporary file next to `url` and renamed over it.
public enum GGUFWriter {
  /// Writes `metadata` in the given order and `tensors` as F32, F16 or BF16 (narrowing rounds
  /// to nearest even). Tensors are not permuted: callers storing `attn_q`/`attn_k` for the
  /// `llama` architecture must apply llama.cpp's rotary permutation themselves.
  public static func write(
    metadata: [(String, GGUFValue)], tensors: [(name: String, tensor: Tensor, type: GGMLType)], to url: URL
  ) throws {
    let path = url.path
    var alignment = GGUFFile.defaultAlignment
    var keys = Set<String>()
    for (key, value) in metadata {
      guard keys.insert(key).inserted else {
        throw FormatError.invalidArgument(path: path, detail: "metadata key '\(key)' is listed twice")
      }
      if key == "general.alignment" {
        guard case .uint32(let declared) = value, declared != 0, declared % 8 == 0 else {
          throw FormatError.invalidArgument(path: path, detail: "general.alignment must be a non-zero uint32 multiple of 8, found \(value)")
        }
        alignment = Int(declared)
      }
    }

    var header = Data()
    header.append(contentsOf: Array("GGUF".utf8))
    append(UInt32(3), to: &header)
    append(UInt64(tensors.count), to: &header)
    append(UInt64(metadata.count), to: &header)
    for (key, value) in metadata {
      append(string: key, to: &header)
      append(value.type.rawValue, to: &header)
      try append(value: value, to: &header, key: key, path: path)
    }

    var names = Set<String>()
    var offset = 0
    var offsets: [Int] = []
    for (name, tensor, type) in tensors {
      guard names.insert(name).inserted else {
        throw FormatError.invalidArgument(path: path, detail: "tensor '\(name)' is listed twice")
      }
      guard [.f32, .f16, .bf16].contains(type) else {
        throw FormatError.invalidArgument(path: path, detail: "tensor '\(name)': type \(type.name) is not F32, F16 or BF16")
      }
      guard tensor.rank <= 4 else {
        throw FormatError.invalidArgument(path: path, detail: "tensor '\(name)' has \(tensor.rank) dimensions, at most 4 allowed")
      }
      append(string: name, to: &header)
      append(UInt32(tensor.rank), to: &header)
      for dimension in tensor.shape.reversed() { append(UInt64(dimension), to: &header) }
      append(type.rawValue, to: &header)
      append(UInt64(offset), to: &header)
      offsets.append(offset)
      offset = padded(offset + tensor.count * type.blockBytes, to: alignment)
    }
    header.append(Data(count: padded(header.count, to: alignment) - header.count))

    try writeAtomically(to: url) { handle in
      handle.write(header)
      var written = 0
      for ((_, tensor, type), tensorOffset) in zip(tensors, offsets) {
        if tensorOffset > written { handle.write(Data(count: tensorOffset - written)) }
        let dtype: SafetensorsDType
        switch type {
        case .f16: dtype = .f16
        case .bf16: dtype = .bf16
        default: dtype = .f32
        }
        let bytes = SafetensorsWriter.encode(tensor.data, as: dtype)
        handle.write(bytes)
        written = tensorOffset + bytes.count
      }
    }
  }

  private static func padded(_ value: Int, to alignment: Int) -> Int {
    (value + alignment - 1) / alignment * alignment
  }

  private static func append<T: FixedWidthInteger>(_ value: T, to data: inout Data) {
    withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) }
  }

  private static func append(string: String, to data: inout Data) {
    let bytes = Array(string.utf8)
    append(UInt64(bytes.count), to: &data)
    data.append(contentsOf: bytes)
  }

  private static func append(value: GGUFValue, to data: inout Data, key: String, path: String) throws {
    switch value {
    case .uint8(let number): append(number, to: &data)
    case .int8(let number): append(number, to: &data)
    case .uint16(let number): append(number, to: &data)
    case .int16(let number): append(number, to: &data)
    case .uint32(let number): append(number, to: &data)
    case .int32(let number): append(number, to: &data)
    case .uint64(let number): append(number, to: &data)
    case .int64(let number): append(number, to: &data)
    case .float32(let number): append(number.bitPattern, to: &data)
    case .float64(let number): append(number.bitPattern, to: &data)
    case .bool(let flag): append(UInt8(flag ? 1 : 0), to: &data)
    case .string(let text): append(string: text, to: &data)
    case .array(let elementType, let elements):
      append(elementType.rawValue, to: &data)
      append(UInt64(elements.count), to: &data)
      for element in elements {
        guard element.type == elementType else {
          throw FormatError.invalidArgument(
            path: path, detail: "metadata '\(key)': array of \(elementType) holds a \(element.type) element")
        }
        try append(value: element, to: &data, key: key, path: path)
      }
    }
  }
}
