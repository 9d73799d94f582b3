import Foundation
import Testing
import XLTensors

@testable import XLFormats

/// Checks against a real SmolLM2 GGUF named by XLLAMA_MODEL (skipped when unset). When
/// XLLAMA_MODEL_EXPECTED names a file written by
/// `scripts/make_format_fixtures.py --model-expectations`, tensors are also compared with
/// gguf-py's dequantization and un-permutation.
@Suite("Real GGUF model", .enabled(if: ProcessInfo.processInfo.environment["XLLAMA_MODEL"] != nil))
struct RealModelTests {
  static var modelURL: URL? {
    ProcessInfo.processInfo.environment["XLLAMA_MODEL"].map { URL(fileURLWithPath: $0) }
  }

  @Test("dimensions of SmolLM2")
  func dimensions() throws {
    let url = try #require(Self.modelURL)
    let weights = try GGUFWeights(url: url)
    let metadata = weights.file.metadata
    let width = try #require(metadata["llama.embedding_length"]?.int)
    let heads = try #require(metadata["llama.attention.head_count"]?.int)
    let kvHeads = try #require(metadata["llama.attention.head_count_kv"]?.int)
    let vocabulary = try #require(metadata["tokenizer.ggml.tokens"]?.stringArray)
    #expect(metadata["tokenizer.ggml.pre"]?.string == "smollm")
    #expect(metadata["tokenizer.chat_template"]?.string?.isEmpty == false)

    let query = try weights.tensor(named: "model.layers.0.self_attn.q_proj.weight")
    #expect(query.shape == [width, width])
    let key = try weights.tensor(named: "model.layers.0.self_attn.k_proj.weight")
    #expect(key.shape == [width / heads * kvHeads, width])
    #expect(weights.file.info(named: "token_embd.weight")?.shape == [vocabulary.count, width])
    let allFinite = query.data.allSatisfy { $0.isFinite }
    #expect(allFinite)
    if width == 576 {
      #expect(query.shape == [576, 576])
    }
  }

  @Test("matches gguf-py expectations",
        .enabled(if: ProcessInfo.processInfo.environment["XLLAMA_MODEL_EXPECTED"] != nil))
  func matchesPython() throws {
    let url = try #require(Self.modelURL)
    let expectedPath = try #require(ProcessInfo.processInfo.environment["XLLAMA_MODEL_EXPECTED"])
    let weights = try GGUFWeights(url: url)
    let expected = try SafetensorsFile(url: URL(fileURLWithPath: expectedPath))
    for name in expected.tensorNames {
      let reference = try expected.tensor(named: name)
      var found: Tensor
      if name.hasSuffix("[:8]") {
        found = try weights.tensor(named: String(name.dropLast(4))).rows(0..<8)
      } else {
        found = try weights.tensor(named: name)
      }
      // Tolerance 1e-6 relative (same formulas in float32, possibly another association).
      expectClose(found, reference, tolerance: 1e-6, name)
    }
  }

  @Test("every tensor loads and is finite")
  func loadsEveryTensor() throws {
    let url = try #require(Self.modelURL)
    let weights = try GGUFWeights(url: url)
    let clock = ContinuousClock()
    var elements = 0
    var nonFinite: [String] = []
    let elapsed = try clock.measure {
      for name in weights.tensorNames {
        let tensor = try weights.tensor(named: name)
        elements += tensor.count
        if !tensor.data.allSatisfy({ $0.isFinite }) { nonFinite.append(name) }
      }
    }
    print("loaded \(weights.tensorNames.count) tensors, \(elements) elements, in \(elapsed)")
    #expect(nonFinite.isEmpty, "non-finite values in \(nonFinite)")
    #expect(elements > 0)
  }
}
