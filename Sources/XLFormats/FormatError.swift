import Foundation

/// Errors raised while reading or writing weight files (safetensors, GGUF).
///
/// Every case carries the path of the file involved, and where it applies the tensor or
/// metadata key, so that a message points at the exact place that is invalid.
public enum FormatError: Error, CustomStringConvertible, LocalizedError, Equatable {
  /// The file does not exist.
  case fileNotFound(path: String)
  /// The file exists but could not be opened, mapped, written or renamed.
  case ioFailed(path: String, detail: String)
  /// The file's header or layout is invalid (bad magic, truncated, bad counts, bad JSON).
  case invalidHeader(path: String, detail: String)
  /// A metadata entry is invalid or has the wrong type.
  case invalidMetadata(path: String, key: String, detail: String)
  /// A tensor's description or data is invalid (shape, byte range, offsets, type).
  case invalidTensor(path: String, tensor: String, detail: String)
  /// A tensor has a data type this reader does not support for the requested conversion.
  case unsupportedType(path: String, tensor: String, type: String)
  /// No tensor of this name exists in the file.
  case missingTensor(path: String, tensor: String)
  /// The caller asked to write something the format cannot hold.
  case invalidArgument(path: String, detail: String)

  public var description: String {
    switch self {
    case .fileNotFound(let path):
      return "\(path): file not found"
    case .ioFailed(let path, let detail):
      return "\(path): \(detail)"
    case .invalidHeader(let path, let detail):
      return "\(path): invalid header: \(detail)"
    case .invalidMetadata(let path, let key, let detail):
      return "\(path): invalid metadata '\(key)': \(detail)"
    case .invalidTensor(let path, let tensor, let detail):
      return "\(path): invalid tensor '\(tensor)': \(detail)"
    case .unsupportedType(let path, let tensor, let type):
      return "\(path): tensor '\(tensor)' has unsupported type \(type)"
    case .missingTensor(let path, let tensor):
      return "\(path): tensor '\(tensor)' not found"
    case .invalidArgument(let path, let detail):
      return "\(path): cannot write: \(detail)"
    }
  }

  public var errorDescription: String? { description }
}
