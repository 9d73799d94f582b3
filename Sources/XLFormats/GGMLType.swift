/// Tensor element types of ggml, with the codes GGUF stores (u32).
///
/// Codes and block sizes follow ggml's `ggml.h`/`ggml.c` (the codes 4, 5, 9 and 31–33 are
/// retired or never stored). Only some types can be dequantized: see `isDequantizable`.
public enum GGMLType: UInt32, Sendable, CaseIterable {
  case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8
  case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
  case iq2_XXS = 16, iq2_XS = 17, iq3_XXS = 18, iq1_S = 19, iq4_NL = 20, iq3_S = 21, iq2_S = 22
  case iq4_XS = 23, i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_M = 29, bf16 = 30
  case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39

  /// Elements per block (1 for plain types, 32 or 256 for quantized ones).
  public var blockSize: Int {
    switch self {
    case .f32, .f16, .bf16, .i8, .i16, .i32, .i64, .f64: return 1
    case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .iq4_NL, .mxfp4: return 32
    default: return 256
    }
  }

  /// Bytes per block.
  public var blockBytes: Int {
    switch self {
    case .f32, .i32: return 4
    case .f16, .bf16, .i16: return 2
    case .i8: return 1
    case .i64, .f64: return 8
    case .q4_0: return 18
    case .q4_1: return 20
    case .q5_0: return 22
    case .q5_1: return 24
    case .q8_0: return 34
    case .q2_K: return 84
    case .q3_K: return 110
    case .q4_K: return 144
    case .q5_K: return 176
    case .q6_K: return 210
    case .q8_K: return 292
    case .iq2_XXS: return 66
    case .iq2_XS: return 74
    case .iq3_XXS: return 98
    case .iq1_S: return 50
    case .iq4_NL: return 18
    case .iq3_S: return 110
    case .iq2_S: return 82
    case .iq4_XS: return 136
    case .iq1_M: return 56
    case .tq1_0: return 54
    case .tq2_0: return 66
    case .mxfp4: return 17
    }
  }

  /// The name llama.cpp prints (`Q4_K`, `F16`).
  public var name: String {
    switch self {
    case .mxfp4: return "MXFP4"
    default: return String(describing: self).uppercased()
    }
  }

  /// Whether `GGUFFile.tensor(named:)` can convert this type to float32.
  public var isDequantizable: Bool {
    switch self {
    case .f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q4_K, .q5_K, .q6_K: return true
    default: return false
    }
  }
}
