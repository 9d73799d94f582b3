import Foundation
import Testing
import XLFormats
import XLTensors
@testable import XLModels

/// The real SmolLM2-135M-Instruct teacher (the Q4_1 GGUF) against log-probabilities and greedy
/// continuations computed by transformers from the same file.
@Suite("SmolLM2 teacher against transformers")
struct SmolLM2TeacherTests {
  /// Absolute tolerance on log-probabilities above `floor`; far-tail values differ more in
  /// float32 and matter to no metric.
  static let tolerance: Float = 5e-3
  static let floor: Float = -15

  static func load() throws -> (LoadedModel, SafetensorsFile, Int)? {
    guard let model = TestPaths.defaultModel, let fixture = TestPaths.fixture("smollm2_teacher.safetensors") else { return nil }
    let file = try SafetensorsFile(url: fixture)
    let prompts = file.tensorNames.filter { $0.hasSuffix(".input_ids") }.count
    return (try ModelLoader.load(model), file, prompts)
  }

  @Test("log-probabilities match within 5e-3")
  func logProbabilities() throws {
    guard let (loaded, file, prompts) = try Self.load() else { return }
    #expect(prompts > 0)
    let v = loaded.configuration.vocabularySize
    for prompt in 0..<prompts {
      let ids = try file.integers(named: "prompt\(prompt).input_ids")
      let reference = try file.tensor(named: "prompt\(prompt).logprobs")
      #expect(reference.shape == [ids.count, v])
      let logits = try loaded.model.makeSession().append(ids, logits: .all)
      var row = [Float](repeating: 0, count: v)
      var worst: Float = 0
      var compared = 0
      for position in 0..<ids.count {
        logits.data.withUnsafeBufferPointer { all in
          Kernels.logSoftmax(all.baseAddress! + position * v, count: v, into: &row)
        }
        for token in 0..<v where reference.data[position * v + token] > Self.floor {
          worst = max(worst, abs(row[token] - reference.data[position * v + token]))
          compared += 1
        }
      }
      #expect(compared > 0)
      #expect(worst < Self.tolerance, "prompt \(prompt): max |Δ log p| = \(worst) over \(compared) values")
    }
  }

  @Test("greedy continuations are identical")
  func greedyContinuations() throws {
    guard let (loaded, file, prompts) = try Self.load() else { return }
    for prompt in 0..<prompts {
      let ids = try file.integers(named: "prompt\(prompt).input_ids")
      let expected = try file.integers(named: "prompt\(prompt).greedy_ids")
      let session = loaded.model.makeSession()
      var logits = try session.append(ids, logits: .last)
      var produced: [Int] = []
      while produced.count < expected.count {
        var best = 0
        for token in 1..<logits.count where logits.data[token] > logits.data[best] { best = token }
        produced.append(best)
        if loaded.stopTokenIDs.contains(best) { break }
        logits = try session.append([best], logits: .last)
      }
      #expect(produced == expected, "prompt \(prompt)")
    }
  }
}
