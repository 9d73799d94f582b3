import Foundation
import Testing
import XLTensors

@testable import XLFormats

/// Element-wise check with a relative tolerance: |found − expected| ≤ tolerance · max(|expected|, 1e-3).
func expectClose(_ found: Tensor, _ expected: Tensor, tolerance: Float, _ label: String) {
  #expect(found.shape == expected.shape, "\(label): shape")
  guard found.shape == expected.shape else { return }
  var worst: Float = 0
  for index in 0..<found.count {
    let scale = max(abs(expected.data[index]), 1e-3)
    worst = max(worst, abs(found.data[index] - expected.data[index]) / scale)
  }
  #expect(worst <= tolerance, "\(label): worst relative error \(worst)")
}

@Suite("GGUF reader")
struct GGUFReaderTests {
  static let quantFile = resourcesFolder().appendingPathComponent("quant_types.gguf")
  static let quantExpected = resourcesFolder().appendingPathComponent("quant_types.safetensors")

  @Test("dequantizes every type like gguf-py", arguments: ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k"])
  func dequantizes(typeName: String) throws {
    let file = try GGUFFile(url: Self.quantFile)
    let expected = try SafetensorsFile(url: Self.quantExpected)
    let info = try #require(file.info(named: typeName))
    #expect(info.type.name.lowercased() == typeName)
    #expect(info.dimensions == [512, 3])
    // Tolerance 1e-6 relative: both sides compute d·scale·q − dmin·min in float32, but
    // numpy may associate the products differently.
    expectClose(try file.tensor(named: typeName), try expected.tensor(named: typeName), tolerance: 1e-6, typeName)
  }

  @Test("metadata of every value type")
  func metadataTypes() throws {
    let file = try GGUFFile(url: Self.quantFile)
    let metadata = file.metadata
    #expect(file.version == 3)
    #expect(metadata["general.architecture"]?.string == "llama")
    #expect(metadata["test.u8"] == .uint8(200))
    #expect(metadata["test.i8"] == .int8(-100))
    #expect(metadata["test.u16"] == .uint16(60000))
    #expect(metadata["test.i16"] == .int16(-30000))
    #expect(metadata["test.u32"] == .uint32(4_000_000_000))
    #expect(metadata["test.i32"] == .int32(-2_000_000_000))
    #expect(metadata["test.f32"] == .float32(0.5))
    #expect(metadata["test.bool"] == .bool(true))
    #expect(metadata["test.string"]?.string == "héllo ✓")
    #expect(metadata["test.u64"]?.int == (1 << 40) + 3)
    #expect(metadata["test.i64"]?.int == -(1 << 40) - 5)
    #expect(metadata["test.f64"] == .float64(0.1))
    #expect(metadata["test.string_array"]?.stringArray == ["a", "Ġb", ""])
    #expect(metadata["test.i32_array"]?.intArray == [1, -2, 3])
    #expect(metadata["test.f32_array"]?.floatArray == [0.25, -1.5])
    let nested = try #require(metadata["test.nested_array"]?.array)
    #expect(nested.map(\.intArray) == [[1, 2], [3]])
    #expect(metadata["llama.attention.head_count"]?.int == 4)
  }

  @Test("honours general.alignment 64")
  func alignment64() throws {
    let folder = resourcesFolder()
    let file = try GGUFFile(url: folder.appendingPathComponent("aligned64.gguf"))
    let expected = try SafetensorsFile(url: folder.appendingPathComponent("aligned64.safetensors"))
    #expect(file.alignment == 64)
    #expect(file.dataStart % 64 == 0)
    #expect(try file.tensor(named: "first") == expected.tensor(named: "first"))
    #expect(try file.tensor(named: "second") == expected.tensor(named: "second"))
  }
}

@Suite("GGUF Hugging Face names")
struct GGUFWeightsTests {
  @Test("undoes rotary permutation like llama.cpp")
  func unpermutes() throws {
    let weights = try GGUFWeights(url: GGUFReaderTests.quantFile)
    let expected = try SafetensorsFile(url: GGUFReaderTests.quantExpected)
    #expect(weights.undoesRotaryPermutation)
    for name in [
      "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight", "model.embed_tokens.weight",
    ] {
      #expect(weights.tensorNames.contains(name))
      #expect(try weights.tensor(named: name) == expected.tensor(named: name), "\(name)")
    }
  }

  @Test("hand-worked permutation of one head")
  func handWorkedPermutation() throws {
    // One head of width 4: GGUF rows [r0, r2, r1, r3] hold HF rows [r0, r1, r2, r3].
    let gguf = Tensor(shape: [4, 1], data: [0, 2, 1, 3])
    let restored = try GGUFWeights.undoRotaryPermutation(gguf, headCount: 1)
    #expect(restored.data == [0, 1, 2, 3])
    #expect(throws: FormatError.self) { try GGUFWeights.undoRotaryPermutation(gguf, headCount: 3) }
  }

  @Test("name mapping both ways")
  func nameMapping() {
    let pairs = [
      ("token_embd.weight", "model.embed_tokens.weight"),
      ("output_norm.weight", "model.norm.weight"),
      ("output.weight", "lm_head.weight"),
      ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"),
      ("blk.12.ffn_norm.weight", "model.layers.12.post_attention_layernorm.weight"),
      ("blk.3.attn_q.weight", "model.layers.3.self_attn.q_proj.weight"),
      ("blk.3.attn_k.weight", "model.layers.3.self_attn.k_proj.weight"),
      ("blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight"),
      ("blk.3.attn_output.weight", "model.layers.3.self_attn.o_proj.weight"),
      ("blk.29.ffn_gate.weight", "model.layers.29.mlp.gate_proj.weight"),
      ("blk.29.ffn_up.weight", "model.layers.29.mlp.up_proj.weight"),
      ("blk.29.ffn_down.weight", "model.layers.29.mlp.down_proj.weight"),
    ]
    for (gguf, huggingFace) in pairs {
      #expect(GGUFWeights.huggingFaceName(forGGUF: gguf) == huggingFace)
      #expect(GGUFWeights.ggufName(forHuggingFace: huggingFace) == gguf)
    }
    #expect(GGUFWeights.huggingFaceName(forGGUF: "blk.x.attn_q.weight") == nil)
    #expect(GGUFWeights.huggingFaceName(forGGUF: "rope_freqs.weight") == nil)
  }
}
