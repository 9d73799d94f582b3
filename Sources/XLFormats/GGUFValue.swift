/// Type codes of GGUF metadata values, as stored in the file (u32).
public enum GGUFValueType: UInt32, Sendable, CaseIterable {
  case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
  case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

  /// Bytes per value for fixed-size types; nil for strings and arrays.
  var fixedSize: Int? {
    switch self {
    case .uint8, .int8, .bool: return 1
    case .uint16, .int16: return 2
    case .uint32, .int32, .float32: return 4
    case .uint64, .int64, .float64: return 8
    case .string, .array: return nil
    }
  }

  /// The fewest bytes one value of this type occupies (a string's or array's length fields).
  var minimumSize: Int { fixedSize ?? (self == .string ? 8 : 12) }
}

/// One GGUF metadata value.
public enum GGUFValue: Sendable, Equatable {
  case uint8(UInt8)
  case int8(Int8)
  case uint16(UInt16)
  case int16(Int16)
  case uint32(UInt32)
  case int32(Int32)
  case float32(Float)
  case bool(Bool)
  case string(String)
  /// An array whose elements all have `elementType` (nested arrays allowed).
  case array(elementType: GGUFValueType, [GGUFValue])
  case uint64(UInt64)
  case int64(Int64)
  case float64(Double)

  public var type: GGUFValueType {
    switch self {
    case .uint8: return .uint8
    case .int8: return .int8
    case .uint16: return .uint16
    case .int16: return .int16
    case .uint32: return .uint32
    case .int32: return .int32
    case .float32: return .float32
    case .bool: return .bool
    case .string: return .string
    case .array: return .array
    case .uint64: return .uint64
    case .int64: return .int64
    case .float64: return .float64
    }
  }

  /// The value as an `Int` for any integer type (nil for other types or a u64 above `Int.max`).
  public var int: Int? {
    switch self {
    case .uint8(let value): return Int(value)
    case .int8(let value): return Int(value)
    case .uint16(let value): return Int(value)
    case .int16(let value): return Int(value)
    case .uint32(let value): return Int(value)
    case .int32(let value): return Int(value)
    case .uint64(let value): return Int(exactly: value)
    case .int64(let value): return Int(value)
    default: return nil
    }
  }

  /// The value as a `Double` for float and integer types.
  public var double: Double? {
    switch self {
    case .float32(let value): return Double(value)
    case .float64(let value): return value
    default: return int.map(Double.init)
    }
  }

  public var string: String? {
    if case .string(let value) = self { return value }
    return nil
  }

  public var bool: Bool? {
    if case .bool(let value) = self { return value }
    return nil
  }

  /// The elements of an array value.
  public var array: [GGUFValue]? {
    if case .array(_, let values) = self { return values }
    return nil
  }

  /// An array of strings (nil when not an array or when any element is not a string).
  public var stringArray: [String]? {
    guard let values = array else { return nil }
    var result: [String] = []
    result.reserveCapacity(values.count)
    for value in values {
      guard let text = value.string else { return nil }
      result.append(text)
    }
    return result
  }

  /// An array of integers of any integer type.
  public var intArray: [Int]? {
    guard let values = array else { return nil }
    var result: [Int] = []
    result.reserveCapacity(values.count)
    for value in values {
      guard let number = value.int else { return nil }
      result.append(number)
    }
    return result
  }

  /// An array of numbers of any float or integer type.
  public var doubleArray: [Double]? {
    guard let values = array else { return nil }
    var result: [Double] = []
    result.reserveCapacity(values.count)
    for value in values {
      guard let number = value.double else { return nil }
      result.append(number)
    }
    return result
  }

  /// An array of numbers as `Float` (token scores are stored as f32).
  public var floatArray: [Float]? { doubleArray?.map { Float($0) } }
}
