import Foundation
import Testing
import XLFormats
import XLTensors
@testable import XLModels

/// The tiny random teacher/student pair of the reference fixtures: a 2-layer grouped-query
/// Llama and the xLlama initialized from it, with logits and mixing matrices computed by
/// transformers and the official xLSTM code.
@Suite("Tiny teacher and student against the reference")
struct TinyModelTests {
  static let tolerance: Float = 1e-4

  struct Pair {
    let teacher: LlamaModel
    let student: XLlamaModel
    let expected: SafetensorsFile
    let ids: [Int]
    let batch: Int
    let length: Int
  }

  static func load() throws -> Pair? {
    guard let folder = TestPaths.fixture("tiny") else { return nil }
    let teacherConfig = try ModelConfiguration(
      configJSON: Data(contentsOf: folder.appendingPathComponent("teacher_config.json")), source: "teacher_config.json")
    let studentConfig = try ModelConfiguration(
      configJSON: Data(contentsOf: folder.appendingPathComponent("student_config.json")), source: "student_config.json")
    let teacher = try LlamaModel(
      configuration: teacherConfig, weights: SafetensorsFile(url: folder.appendingPathComponent("teacher.safetensors")),
      source: "teacher.safetensors")
    let student = try XLlamaModel(
      configuration: studentConfig, weights: SafetensorsFile(url: folder.appendingPathComponent("student.safetensors")),
      source: "student.safetensors")
    let expected = try SafetensorsFile(url: folder.appendingPathComponent("mohawk.safetensors"))
    let shape = try #require(expected.info(named: "input_ids")).shape
    return Pair(
      teacher: teacher, student: student, expected: expected, ids: try expected.integers(named: "input_ids"),
      batch: shape[0], length: shape[1])
  }

  @Test("teacher logits match transformers")
  func teacherLogits() throws {
    guard let pair = try Self.load() else { return }
    let expected = try pair.expected.tensor(named: "teacher_logits")
    let v = pair.teacher.configuration.vocabularySize
    for row in 0..<pair.batch {
      let ids = Array(pair.ids[(row * pair.length)..<((row + 1) * pair.length)])
      let logits = try pair.teacher.makeSession().append(ids, logits: .all)
      let reference = Array(expected.data[(row * pair.length * v)..<((row + 1) * pair.length * v)])
      #expect(relativeDifference(logits.data, reference) < Self.tolerance)
    }
  }

  @Test("teacher decode equals prefill")
  func teacherDecodeEqualsPrefill() throws {
    guard let pair = try Self.load() else { return }
    let ids = Array(pair.ids[0..<pair.length])
    let all = try pair.teacher.makeSession().append(ids, logits: .all)
    let session = pair.teacher.makeSession()
    _ = try session.append(Array(ids[0..<10]), logits: .none)
    var stepped: [Float] = []
    for token in ids[10...] { stepped += try session.append([token], logits: .last).data }
    let v = pair.teacher.configuration.vocabularySize
    #expect(relativeDifference(stepped, Array(all.data[(10 * v)...])) < Self.tolerance)
  }

  @Test("student logits match xLSTM, chunkwise and recurrent")
  func studentLogits() throws {
    guard let pair = try Self.load() else { return }
    let expected = try pair.expected.tensor(named: "student_logits")
    let v = pair.student.configuration.vocabularySize
    for row in 0..<pair.batch {
      let ids = Array(pair.ids[(row * pair.length)..<((row + 1) * pair.length)])
      let reference = Array(expected.data[(row * pair.length * v)..<((row + 1) * pair.length * v)])
      let prefill = try pair.student.makeSession().append(ids, logits: .all)
      #expect(relativeDifference(prefill.data, reference) < Self.tolerance)

      let session = pair.student.makeSession()
      var stepped: [Float] = []
      for token in ids { stepped += try session.append([token], logits: .last).data }
      #expect(relativeDifference(stepped, reference) < Self.tolerance)
    }
  }

  @Test("student mixing matrices match xLSTM")
  func studentMixingMatrices() throws {
    guard let pair = try Self.load() else { return }
    let c = pair.student.configuration
    for layer in 0..<c.layerCount {
      let hidden = try pair.expected.tensor(named: "teacher_hidden.\(layer)")
      let expected = try pair.expected.tensor(named: "student_mixing_matrix.\(layer)")
      let s = pair.length
      for row in 0..<pair.batch {
        let input = Tensor(shape: [s, c.hiddenSize], data: Array(hidden.data[(row * s * c.hiddenSize)..<((row + 1) * s * c.hiddenSize)]))
        let matrix = pair.student.mixingMatrix(layer: layer, hidden: input)
        let width = c.headCount * s * s
        #expect(relativeDifference(matrix.data, Array(expected.data[(row * width)..<((row + 1) * width)])) < Self.tolerance)
      }
    }
  }
}
