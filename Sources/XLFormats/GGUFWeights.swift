import Foundation
import XLTensors

/// The tensors of a llama-family GGUF file under their Hugging Face names, in Hugging Face
/// layout.
///
/// Names map as llama.cpp's converter maps them (`token_embd.weight` ↔
/// `model.embed_tokens.weight`, `blk.N.attn_q.weight` ↔ `model.layers.N.self_attn.q_proj.weight`,
/// and so on). A GGUF name outside that table is exposed unchanged. For the `llama`
/// architecture the converter permuted the rows of `attn_q` and `attn_k` for ggml's rotary
/// layout. `tensor(named:)` undoes that permutation, so the result equals the Hugging Face
/// checkpoint's tensor (up to quantization).
public final class GGUFWeights: TensorProvider, @unchecked Sendable {
  public let file: GGUFFile
  /// Whether `attn_q`/`attn_k` rows are un-permuted (true for architecture `llama`).
  public let undoesRotaryPermutation: Bool
  /// Hugging Face names, in the file's tensor order.
  public let tensorNames: [String]

  private let ggufNames: [String: String]

  /// Wraps `file`; `undoRotaryPermutation` defaults to whether `general.architecture` is `llama`.
  public init(file: GGUFFile, undoRotaryPermutation: Bool? = nil) {
    self.file = file
    self.undoesRotaryPermutation = undoRotaryPermutation ?? (file.metadata["general.architecture"]?.string == "llama")
    var names: [String] = []
    var ggufNames: [String: String] = [:]
    for ggufName in file.tensorNames {
      let name = Self.huggingFaceName(forGGUF: ggufName) ?? ggufName
      names.append(name)
      ggufNames[name] = ggufName
    }
    self.tensorNames = names
    self.ggufNames = ggufNames
  }

  public convenience init(url: URL) throws {
    self.init(file: try GGUFFile(url: url))
  }

  /// The GGUF tensor name behind the Hugging Face name `name`, if the file contains it.
  public func ggufName(for name: String) -> String? { ggufNames[name] }

  public func tensor(named name: String) throws -> Tensor {
    guard let ggufName = ggufNames[name] else {
      throw FormatError.missingTensor(path: file.url.path, tensor: name)
    }
    let tensor = try file.tensor(named: ggufName)
    guard undoesRotaryPermutation else { return tensor }
    if ggufName.hasSuffix(".attn_q.weight") || ggufName.hasSuffix(".attn_q.bias") {
      return try Self.undoRotaryPermutation(tensor, headCount: headCount(kv: false, tensor: ggufName), path: file.url.path, name: ggufName)
    }
    if ggufName.hasSuffix(".attn_k.weight") || ggufName.hasSuffix(".attn_k.bias") {
      return try Self.undoRotaryPermutation(tensor, headCount: headCount(kv: true, tensor: ggufName), path: file.url.path, name: ggufName)
    }
    return tensor
  }

  /// `<arch>.attention.head_count` (or `head_count_kv`, which defaults to `head_count`).
  private func headCount(kv: Bool, tensor: String) throws -> Int {
    let architecture = file.metadata["general.architecture"]?.string ?? "llama"
    let key = "\(architecture).attention.head_count"
    if kv, let value = file.metadata[key + "_kv"] {
      guard let count = value.int, count > 0 else {
        throw FormatError.invalidMetadata(path: file.url.path, key: key + "_kv", detail: "expected a positive integer, found \(value)")
      }
      return count
    }
    guard let value = file.metadata[key] else {
      throw FormatError.invalidMetadata(path: file.url.path, key: key, detail: "missing; needed to un-permute '\(tensor)'")
    }
    guard let count = value.int, count > 0 else {
      throw FormatError.invalidMetadata(path: file.url.path, key: key, detail: "expected a positive integer, found \(value)")
    }
    return count
  }

  /// Inverts llama.cpp's `w.reshape(heads, 2, rows/heads/2, cols).swapaxes(1, 2).reshape(rows, cols)`.
  ///
  /// Shape: (NH·DH, D) or a bias (NH·DH). Within each head of DH rows, GGUF row `2i + j`
  /// (i < DH/2, j < 2) is Hugging Face row `j·DH/2 + i`.
  public static func undoRotaryPermutation(_ tensor: Tensor, headCount: Int, path: String = "", name: String = "") throws -> Tensor {
    guard tensor.rank >= 1, headCount > 0, tensor.shape[0] % (2 * headCount) == 0 else {
      throw FormatError.invalidTensor(
        path: path, tensor: name, detail: "\(tensor.shape.first ?? 0) rows cannot be split into \(headCount) heads of even width")
    }
    let rows = tensor.shape[0]
    let width = tensor.count / max(rows, 1)
    let headWidth = rows / headCount
    let half = headWidth / 2
    var data = [Float](repeating: 0, count: tensor.count)
    tensor.data.withUnsafeBufferPointer { source in
      data.withUnsafeMutableBufferPointer { target in
        for head in 0..<headCount {
          for i in 0..<half {
            for j in 0..<2 {
              let from = (head * headWidth + 2 * i + j) * width
              let to = (head * headWidth + j * half + i) * width
              for column in 0..<width { target[to + column] = source[from + column] }
            }
          }
        }
      }
    }
    return Tensor(shape: tensor.shape, data: data)
  }

  private static let globalNames: [String: String] = [
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
  ]

  private static let layerNames: [String: String] = [
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
  ]

  /// Returns the Hugging Face name for a GGUF tensor name (`blk.3.ffn_up.weight` →
  /// `model.layers.3.mlp.up_proj.weight`), or nil when the name is not in the table.
  public static func huggingFaceName(forGGUF name: String) -> String? {
    let parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    guard let suffix = parts.last, suffix == "weight" || suffix == "bias" else { return nil }
    if parts.count == 2, let base = globalNames[parts[0]] {
      return "\(base).\(suffix)"
    }
    if parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]), layer >= 0, String(layer) == parts[1],
      let base = layerNames[parts[2]]
    {
      return "model.layers.\(layer).\(base).\(suffix)"
    }
    return nil
  }

  /// Returns the GGUF name for a Hugging Face tensor name, or nil when the name is not in the table.
  public static func ggufName(forHuggingFace name: String) -> String? {
    let suffix: String
    if name.hasSuffix(".weight") { suffix = "weight" } else if name.hasSuffix(".bias") { suffix = "bias" } else { return nil }
    let base = String(name.dropLast(suffix.count + 1))
    if let global = globalNames.first(where: { $0.value == base }) {
      return "\(global.key).\(suffix)"
    }
    let prefix = "model.layers."
    guard base.hasPrefix(prefix) else { return nil }
    let rest = base.dropFirst(prefix.count)
    guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]), layer >= 0,
      String(layer) == rest[..<dot]
    else { return nil }
    let part = String(rest[rest.index(after: dot)...])
    guard let ggufPart = layerNames.first(where: { $0.value == part })?.key else { return nil }
    return "blk.\(layer).\(ggufPart).\(suffix)"
  }
}
