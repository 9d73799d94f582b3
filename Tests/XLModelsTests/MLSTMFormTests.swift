import Testing
import XLTensors
@testable import XLModels

@Suite("mLSTM forms")
struct MLSTMFormTests {
  static let tolerance: Float = 1e-4

  @Test("prefill then steps equals parallel", arguments: [1, 40, 64, 65, 130])
  func prefillThenStepsEqualsParallel(sequence: Int) {
    let inputs = MLSTMInputs(batch: 2, heads: 3, sequence: sequence, keyDim: 16, valueDim: 24,
                             seed: UInt64(sequence))
    let expected = MLSTMCell.parallel(q: inputs.q, k: inputs.k, v: inputs.v, i: inputs.i,
                                      f: inputs.f)
    let steps = min(3, sequence - 1)
    let prefill = sequence - steps
    for chunkSize in [64, 16] {
      var state = MLSTMState(zeros: 2, heads: 3, keyDim: 16, valueDim: 24)
      let head = inputs.slice(0..<prefill)
      var parts = [MLSTMCell.chunkwise(q: head.q, k: head.k, v: head.v, i: head.i, f: head.f,
                                       state: &state, chunkSize: chunkSize)]
      for t in prefill..<sequence {
        let token = inputs.slice(t..<(t + 1))
        parts.append(MLSTMCell.recurrentStep(q: token.q, k: token.k, v: token.v, i: token.i,
                                             f: token.f, state: &state))
      }
      let actual = concatenateSequence(parts)
      #expect(actual.shape == expected.shape)
      let error = relativeError(actual, expected)
      #expect(error <= Self.tolerance, "S = \(sequence), chunk \(chunkSize): error \(error)")
    }
  }

  @Test("chunkwise from a state equals recurrent", arguments: [40, 65])
  func chunkwiseFromStateEqualsRecurrent(sequence: Int) throws {
    let inputs = MLSTMInputs(batch: 1, heads: 2, sequence: sequence, keyDim: 32, valueDim: 16,
                             seed: 100 + UInt64(sequence))
    var random = MLSTMTestRandom(seed: 7)
    let initial = try MLSTMState(
      c: random.tensor([1, 2, 32, 16]), n: random.tensor([1, 2, 32]),
      m: random.tensor([1, 2, 1]))
    var recurrentState = initial
    let expected = MLSTMCell.recurrent(q: inputs.q, k: inputs.k, v: inputs.v, i: inputs.i,
                                       f: inputs.f, state: &recurrentState)
    for chunkSize in [64, 16] {
      var state = initial
      let actual = MLSTMCell.chunkwise(q: inputs.q, k: inputs.k, v: inputs.v, i: inputs.i,
                                       f: inputs.f, state: &state, chunkSize: chunkSize)
      let label = "S = \(sequence), chunk \(chunkSize)"
      #expect(relativeError(actual, expected) <= Self.tolerance, "h, \(label)")
      #expect(relativeError(state.c, recurrentState.c) <= Self.tolerance, "c, \(label)")
      #expect(relativeError(state.n, recurrentState.n) <= Self.tolerance, "n, \(label)")
      #expect(relativeError(state.m, recurrentState.m) <= Self.tolerance, "m, \(label)")
    }
  }

  @Test("zero-padded chunk gives a wrong state")
  func zeroPaddingChangesState() {
    // Guards the test above: a padded tail must be distinguishable from the true state.
    let inputs = MLSTMInputs(batch: 1, heads: 1, sequence: 40, keyDim: 8, valueDim: 8, seed: 3)
    var padded = MLSTMInputs(batch: 1, heads: 1, sequence: 64, keyDim: 8, valueDim: 8, seed: 3)
    for (target, source) in [(\MLSTMInputs.q, inputs.q), (\.k, inputs.k), (\.v, inputs.v),
                             (\.i, inputs.i), (\.f, inputs.f)] {
      let width = source.rank == 4 ? source.shape[3] : 1
      var data = [Float](repeating: 0, count: 64 * width)
      data.replaceSubrange(0..<(40 * width), with: source.data)
      padded[keyPath: target] = Tensor(shape: padded[keyPath: target].shape, data: data)
    }
    var exact = MLSTMState(zeros: 1, heads: 1, keyDim: 8, valueDim: 8)
    _ = MLSTMCell.chunkwise(q: inputs.q, k: inputs.k, v: inputs.v, i: inputs.i, f: inputs.f,
                            state: &exact)
    var wrong = MLSTMState(zeros: 1, heads: 1, keyDim: 8, valueDim: 8)
    _ = MLSTMCell.chunkwise(q: padded.q, k: padded.k, v: padded.v, i: padded.i, f: padded.f,
                            state: &wrong)
    #expect(relativeError(wrong.m, exact.m) > 1e-2)
  }

  @Test("mixing matrix times v equals parallel")
  func mixingMatrixReproducesParallel() {
    let inputs = MLSTMInputs(batch: 2, heads: 2, sequence: 33, keyDim: 16, valueDim: 8, seed: 11)
    let mixing = MLSTMCell.mixingMatrix(q: inputs.q, k: inputs.k, i: inputs.i, f: inputs.f)
    #expect(mixing.shape == [2, 2, 33, 33])
    var product = [Float](repeating: 0, count: 2 * 2 * 33 * 8)
    var aboveDiagonal: Float = 0
    for head in 0..<4 {
      for t in 0..<33 {
        for s in 0..<33 {
          let weight = mixing.data[(head * 33 + t) * 33 + s]
          if s > t { aboveDiagonal = max(aboveDiagonal, abs(weight)) }
          for d in 0..<8 {
            product[(head * 33 + t) * 8 + d] += weight * inputs.v.data[(head * 33 + s) * 8 + d]
          }
        }
      }
    }
    let expected = MLSTMCell.parallel(q: inputs.q, k: inputs.k, v: inputs.v, i: inputs.i,
                                      f: inputs.f)
    #expect(aboveDiagonal == 0)
    #expect(relativeError(Tensor(shape: expected.shape, data: product), expected) <= 1e-5)
  }

  @Test("state flat values round trip")
  func stateRoundTrip() throws {
    var random = MLSTMTestRandom(seed: 5)
    let state = try MLSTMState(c: random.tensor([2, 3, 4, 5]), n: random.tensor([2, 3, 4]),
                               m: random.tensor([2, 3]))
    let values = state.flatValues
    #expect(values.count == MLSTMState.flatCount(batch: 2, heads: 3, keyDim: 4, valueDim: 5))
    let restored = try MLSTMState(batch: 2, heads: 3, keyDim: 4, valueDim: 5, flatValues: values)
    #expect(restored == state)
    #expect(throws: TensorError.self) {
      try MLSTMState(batch: 2, heads: 3, keyDim: 4, valueDim: 5, flatValues: [1, 2, 3])
    }
    #expect(throws: TensorError.self) {
      try MLSTMState(c: Tensor(zeros: [1, 2, 4, 4]), n: Tensor(zeros: [1, 2, 5]),
                     m: Tensor(zeros: [1, 2]))
    }
  }
}
