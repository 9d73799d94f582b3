import Foundation
import Testing
import XLFormats
import XLTensors
@testable import XLModels

/// Checks every case of the fixture made by the official `mlstm_kernels` package:
/// `mlstm_kernels.json` lists the cases, `mlstm_kernels.safetensors` contains `caseN.*` tensors.
@Suite("mLSTM kernels fixture")
struct MLSTMFixtureTests {
  static let outputTolerance: Float = 1e-4
  static let gradientTolerance: Float = 1e-3

  struct Case: Decodable {
    var `case`: Int
    var S: Int
    var initial_state: Bool
    var has_gradients: Bool
  }

  /// The fixture folder from `XLLAMA_FIXTURES`, else `../shared/reference/fixtures` next to
  /// the package root; nil when the files are absent.
  static func fixture() throws -> (cases: [Case], tensors: SafetensorsFile)? {
    let folder: URL
    if let path = ProcessInfo.processInfo.environment["XLLAMA_FIXTURES"] {
      folder = URL(fileURLWithPath: path)
    } else {
      folder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("../shared/reference/fixtures").standardized
    }
    let json = folder.appendingPathComponent("mlstm_kernels.json")
    let tensors = folder.appendingPathComponent("mlstm_kernels.safetensors")
    guard FileManager.default.fileExists(atPath: json.path),
          FileManager.default.fileExists(atPath: tensors.path) else {
      print("mLSTM fixture not found in \(folder.path); skipping")
      return nil
    }
    let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: json))
    return (cases, try SafetensorsFile(url: tensors))
  }

  struct Loaded {
    var inputs: [String: Tensor] = [:]
    var initialState: MLSTMState?
  }

  static func load(_ fixtureCase: Case, from file: SafetensorsFile) throws -> Loaded {
    var loaded = Loaded()
    let prefix = "case\(fixtureCase.case)."
    for name in ["q", "k", "v", "i", "f"] {
      loaded.inputs[name] = try file.tensor(named: prefix + name)
    }
    if fixtureCase.initial_state {
      loaded.initialState = try MLSTMState(
        c: file.tensor(named: prefix + "c_initial"), n: file.tensor(named: prefix + "n_initial"),
        m: file.tensor(named: prefix + "m_initial"))
    }
    return loaded
  }

  static func zeroState(for q: Tensor, v: Tensor) -> MLSTMState {
    MLSTMState(zeros: q.shape[0], heads: q.shape[1], keyDim: q.shape[3], valueDim: v.shape[3])
  }

  @Test("chunkwise and recurrent match outputs and states")
  func chunkwiseAndRecurrentMatch() throws {
    guard let (cases, file) = try Self.fixture() else { return }
    #expect(!cases.isEmpty)
    for fixtureCase in cases {
      let loaded = try Self.load(fixtureCase, from: file)
      let (q, k, v) = (loaded.inputs["q"]!, loaded.inputs["k"]!, loaded.inputs["v"]!)
      let (i, f) = (loaded.inputs["i"]!, loaded.inputs["f"]!)
      let prefix = "case\(fixtureCase.case)."
      let expectedH = try file.tensor(named: prefix + "h")
      let expectedC = try file.tensor(named: prefix + "c_final")
      let expectedN = try file.tensor(named: prefix + "n_final")
      let expectedM = try file.tensor(named: prefix + "m_final")
      let initial = loaded.initialState ?? Self.zeroState(for: q, v: v)

      var chunkState = initial
      let chunkH = MLSTMCell.chunkwise(q: q, k: k, v: v, i: i, f: f, state: &chunkState)
      var loopState = initial
      let loopH = MLSTMCell.recurrent(q: q, k: k, v: v, i: i, f: f, state: &loopState)

      for (form, h, state) in [("chunkwise", chunkH, chunkState), ("recurrent", loopH, loopState)] {
        let label = "case \(fixtureCase.case) (S = \(fixtureCase.S)), \(form)"
        #expect(h.shape == expectedH.shape, "\(label)")
        #expect(relativeError(h, expectedH) <= Self.outputTolerance, "h, \(label)")
        #expect(relativeError(state.c, expectedC) <= Self.outputTolerance, "c, \(label)")
        #expect(relativeError(state.n, expectedN) <= Self.outputTolerance, "n, \(label)")
        #expect(relativeError(state.m, expectedM) <= Self.outputTolerance, "m, \(label)")
      }
    }
  }

  @Test("parallel matches outputs and gradients")
  func parallelMatches() throws {
    guard let (cases, file) = try Self.fixture() else { return }
    let gradientCases = cases.filter(\.has_gradients)
    #expect(!gradientCases.isEmpty)
    for fixtureCase in gradientCases {
      let loaded = try Self.load(fixtureCase, from: file)
      let (q, k, v) = (loaded.inputs["q"]!, loaded.inputs["k"]!, loaded.inputs["v"]!)
      let (i, f) = (loaded.inputs["i"]!, loaded.inputs["f"]!)
      let prefix = "case\(fixtureCase.case)."
      let label = "case \(fixtureCase.case) (S = \(fixtureCase.S))"

      let h = MLSTMCell.parallel(q: q, k: k, v: v, i: i, f: f)
      #expect(relativeError(h, try file.tensor(named: prefix + "h")) <= Self.outputTolerance,
              "h, \(label)")

      let dh = try file.tensor(named: prefix + "dh")
      let gradients = MLSTMCell.parallelBackward(q: q, k: k, v: v, i: i, f: f, dh: dh)
      let actual = ["dq": gradients.dq, "dk": gradients.dk, "dv": gradients.dv,
                    "di": gradients.di, "df": gradients.df]
      for name in ["dq", "dk", "dv", "di", "df"] {
        let expected = try file.tensor(named: prefix + name)
        let error = relativeError(actual[name]!, expected)
        #expect(error <= Self.gradientTolerance, "\(name), \(label): error \(error)")
      }
    }
  }
}
