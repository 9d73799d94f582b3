import CKernels
import Foundation
import XLTensors

/// The xLlama student: a Llama whose self-attention is replaced by an mLSTM token mixer.
///
/// Mixer, for normalized input x (S, D) of one sequence:
/// `q, k, v` from projections (k and v shared by NH/NKV query heads), gates
/// `i = c·tanh(igate(x)/c)` and `f = c·tanh(fgate(x)/c)` with the soft cap c, the mLSTM cell
/// (chunkwise for prefill, recurrent for one token), a per-head LayerNorm over DH (mean-centred,
/// weight only, eps = rms_norm_eps), the output gate `σ(ogate(x))` and `out_proj`. The MLP,
/// norms and embedding are the teacher's; `lm_head` is a separate matrix. Follows
/// `MLSTMMixer`/`Student` of the reference xllama_ref.py built on NX-AI's xlstm 2.0.6.
public final class XLlamaModel: LanguageModel, @unchecked Sendable {
  public let configuration: ModelConfiguration
  let embedding: WeightMatrix  // (V, D)
  let layers: [XLlamaLayerWeights]
  let finalNorm: [Float]  // (D)
  let outputProjection: WeightMatrix  // (V, D)

  /// The student has a fixed-size state, so its sessions have no context limit.
  public var contextLimit: Int? { nil }

  /// Loads the checkpoint-named weights from `provider`, checking every shape.
  public init(configuration: ModelConfiguration, weights provider: TensorProvider, source: String) throws {
    var c = configuration
    c.modelType = "xllama"
    try c.validate(source: source)
    self.configuration = c
    let reader = WeightReader(provider: provider, source: source)
    embedding = try reader.readMatrix(XLlamaParameterNames.embedding, shape: [c.vocabularySize, c.hiddenSize])
    finalNorm = try reader.read(XLlamaParameterNames.finalNorm, shape: [c.hiddenSize])
    outputProjection = try reader.readMatrix(XLlamaParameterNames.outputProjection, shape: [c.vocabularySize, c.hiddenSize])
    layers = try (0..<c.layerCount).map { try XLlamaLayerWeights(reader: reader, layer: $0, configuration: c) }
  }

  public func makeSession() -> any ModelSession { XLlamaSession(model: self) }

  public var decodeMatrices: [WeightMatrix] {
    layers.flatMap { [$0.mixerInput, $0.outputProjection, $0.mlpInput, $0.downProjection] } + [outputProjection]
  }

  /// Opens a session that continues from saved recurrent states (one per layer).
  public func makeSession(states: [MLSTMState], tokenCount: Int) throws -> XLlamaSession {
    let session = XLlamaSession(model: self)
    try session.restore(states: states, tokenCount: tokenCount)
    return session
  }

  /// Returns the zero state of one layer.
  func initialState() -> MLSTMState {
    MLSTMState(zeros: 1, heads: configuration.headCount, keyDim: configuration.headDim, valueDim: configuration.headDim)
  }
}

/// A student's running sequence: one mLSTM state (C, n, m per head) per layer, of fixed size
/// whatever the context length.
public final class XLlamaSession: ModelSession {
  let model: XLlamaModel
  public private(set) var tokenCount = 0
  public private(set) var states: [MLSTMState]

  init(model: XLlamaModel) {
    self.model = model
    states = (0..<model.configuration.layerCount).map { _ in model.initialState() }
  }

  public func fork() -> any ModelSession {
    let copy = XLlamaSession(model: model)
    copy.tokenCount = tokenCount
    copy.states = states
    return copy
  }

  /// Replaces the recurrent states; their count and sizes must match the model.
  public func restore(states newStates: [MLSTMState], tokenCount count: Int) throws {
    let expected = model.initialState()
    guard newStates.count == model.configuration.layerCount else {
      throw ModelError.invalidState(path: "state", reason: "has \(newStates.count) layers, expected \(model.configuration.layerCount)")
    }
    for (index, state) in newStates.enumerated() where state.c.shape != expected.c.shape || state.n.shape != expected.n.shape || state.m.shape != expected.m.shape {
      throw ModelError.invalidState(path: "state", reason: "layer \(index) has a state of another shape than the model's")
    }
    states = newStates
    tokenCount = count
  }

  public func append(_ tokens: [Int], logits selection: LogitSelection) throws -> Tensor {
    let c = model.configuration
    try validate(tokens, vocabularySize: c.vocabularySize)
    if tokens.isEmpty { return Tensor(zeros: [0, c.vocabularySize]) }
    let s = tokens.count
    let d = c.hiddenSize
    var hidden = [Float](repeating: 0, count: s * d)
    hidden.withUnsafeMutableBufferPointer { h in
      for (row, token) in tokens.enumerated() { model.embedding.row(token, into: h.baseAddress! + row * d) }
    }
    buffers.prepare(rows: s, configuration: c)
    for layer in 0..<c.layerCount {
      forwardLayer(layer, hidden: &hidden, count: s)
    }
    tokenCount += s
    return LogitsProjection.compute(
      hidden: hidden, rows: s, selection: selection, norm: model.finalNorm,
      eps: c.rmsNormEps, outputProjection: model.outputProjection, vocabularySize: c.vocabularySize)
  }

  /// Work arrays of one forward pass, kept between calls so that decoding allocates nothing
  /// per layer; sized for `rows` tokens.
  private let buffers = LayerBuffers()

  // hidden: (S, D), updated in place.
  private func forwardLayer(_ index: Int, hidden: inout [Float], count s: Int) {
    let c = model.configuration
    let weights = model.layers[index]
    let d = c.hiddenSize
    let nh = c.headCount
    let dh = c.headDim
    let queryWidth = nh * dh
    let keyWidth = c.keyValueHeadCount * dh
    let projected = weights.mixerInput.rows

    Kernels.rmsNorm(hidden, rows: s, dim: d, weight: weights.inputNorm, eps: c.rmsNormEps, into: &buffers.normed)
    weights.mixerInput.apply(buffers.normed, count: s, into: &buffers.fused)

    // Cell output h in the (S, NH·DH) layout: for S = 1 that is also (NH, S, DH).
    if s == 1 {
      recurrentStep(layer: index, gateBiases: weights.gateBiases)
    } else {
      let inputs = MixerInputs(fused: buffers.fused, rows: s, configuration: c, gateBiases: weights.gateBiases)
      let cellOutput = MLSTMCell.chunkwise(
        q: inputs.queries, k: inputs.keys, v: inputs.values, i: inputs.inputGates, f: inputs.forgetGates,
        state: &states[index], chunkSize: c.chunkSize)
      // (NH, S, DH) → (S, NH·DH)
      for head in 0..<nh {
        for row in 0..<s {
          for j in 0..<dh { buffers.cell[row * queryWidth + head * dh + j] = cellOutput.data[(head * s + row) * dh + j] }
        }
      }
    }

    // Per-head LayerNorm and output gate, then out_proj.
    let outputGateOffset = queryWidth + 2 * keyWidth
    buffers.cell.withUnsafeBufferPointer { h in
      buffers.fused.withUnsafeBufferPointer { fused in
        buffers.gated.withUnsafeMutableBufferPointer { gated in
          weights.headNorm.withUnsafeBufferPointer { norm in
            for row in 0..<s {
              xl_head_norm_gate(
                h.baseAddress! + row * queryWidth, fused.baseAddress! + row * projected + outputGateOffset,
                norm.baseAddress!, nh, dh, c.rmsNormEps, gated.baseAddress! + row * queryWidth, 0)
            }
          }
        }
      }
    }
    weights.outputProjection.apply(buffers.gated, count: s, into: &hidden, accumulate: true)

    Kernels.rmsNorm(hidden, rows: s, dim: d, weight: weights.postAttentionNorm, eps: c.rmsNormEps, into: &buffers.normed)
    let width = c.intermediateSize
    weights.mlpInput.apply(buffers.normed, count: s, into: &buffers.gateAndUp)
    buffers.gateAndUp.withUnsafeMutableBufferPointer { gateAndUp in
      buffers.activated.withUnsafeMutableBufferPointer { activated in
        for row in 0..<s {
          let gate = gateAndUp.baseAddress! + row * 2 * width
          Kernels.siluMultiply(gate: gate, up: gate + width, count: width)
          (activated.baseAddress! + row * width).update(from: gate, count: width)
        }
      }
    }
    weights.downProjection.apply(buffers.activated, count: s, into: &hidden, accumulate: true)
  }

  /// One token's mLSTM step read straight from the fused projection (S = 1), without the
  /// `MixerInputs` copies: query head h reads key/value head h / (NH / NKV); gates are
  /// soft-capped as in `MixerInputs`. Each head runs `xl_mlstm_step` of `CKernels`, the
  /// vectorized form of `MLSTMCell.stepHead`. Writes h (NH·DH) to `buffers.cell`.
  private func recurrentStep(layer index: Int, gateBiases: [Float]) {
    let c = model.configuration
    let nh = c.headCount
    let dh = c.headDim
    let queryWidth = nh * dh
    let keyWidth = c.keyValueHeadCount * dh
    let gateOffset = 2 * queryWidth + 2 * keyWidth
    let cap = c.gateSoftCap
    let group = c.groupSize
    states[index].withMutableBuffers { cState, nState, mState in
      buffers.fused.withUnsafeBufferPointer { fusedBuffer in
        buffers.cell.withUnsafeMutableBufferPointer { h in
          let fused = fusedBuffer.baseAddress!
          for head in 0..<nh {
            let keys = fused + queryWidth + (head / group) * dh
            let inputGate = cap * tanh((fused[gateOffset + head] + gateBiases[head]) / cap)
            let forgetGate = cap * tanh((fused[gateOffset + nh + head] + gateBiases[nh + head]) / cap)
            xl_mlstm_step(
              fused + head * dh, keys, keys + keyWidth, inputGate, forgetGate,
              cState + head * dh * dh, nState + head * dh, mState + head, dh, dh, MLSTMCell.eps,
              h.baseAddress! + head * dh, 0)
          }
        }
      }
    }
  }
}

/// The work arrays of `XLlamaSession`'s forward pass for S rows. A class, so that one array
/// can be read while another is written without overlapping accesses to one property.
private final class LayerBuffers {
  var rows = -1
  var normed: [Float] = []  // (S, D)
  var fused: [Float] = []  // (S, P)
  var cell: [Float] = []  // (S, NH·DH)
  var gated: [Float] = []  // (S, NH·DH)
  var gateAndUp: [Float] = []  // (S, 2·I)
  var activated: [Float] = []  // (S, I)

  func prepare(rows s: Int, configuration c: ModelConfiguration) {
    if s == rows { return }
    rows = s
    let queryWidth = c.headCount * c.headDim
    let projected = 2 * queryWidth + 2 * c.keyValueHeadCount * c.headDim + 2 * c.headCount
    normed = [Float](repeating: 0, count: s * c.hiddenSize)
    fused = [Float](repeating: 0, count: s * projected)
    cell = [Float](repeating: 0, count: s * queryWidth)
    gated = cell
    gateAndUp = [Float](repeating: 0, count: s * 2 * c.intermediateSize)
    activated = [Float](repeating: 0, count: s * c.intermediateSize)
  }
}

/// The cell's inputs cut out of the fused projection, in the (B=1, NH, S, DH) layout of the
/// mLSTM kernels, with key/value heads repeated for their query heads and gates soft-capped.
struct MixerInputs {
  let queries: Tensor  // (1, NH, S, DH)
  let keys: Tensor  // (1, NH, S, DH)
  let values: Tensor  // (1, NH, S, DH)
  let inputGates: Tensor  // (1, NH, S)
  let forgetGates: Tensor  // (1, NH, S)

  // fused: (S, P) with columns q | k | v | ogate | igate | fgate.
  init(fused: [Float], rows s: Int, configuration c: ModelConfiguration, gateBiases: [Float]) {
    let nh = c.headCount
    let dh = c.headDim
    let queryWidth = nh * dh
    let keyWidth = c.keyValueHeadCount * dh
    let projected = 2 * queryWidth + 2 * keyWidth + 2 * nh
    let group = c.groupSize
    var q = [Float](repeating: 0, count: nh * s * dh)
    var k = q
    var v = q
    var i = [Float](repeating: 0, count: nh * s)
    var f = i
    let cap = c.gateSoftCap
    let gateOffset = 2 * queryWidth + 2 * keyWidth
    for head in 0..<nh {
      let kvColumn = queryWidth + (head / group) * dh
      for row in 0..<s {
        let base = row * projected
        let target = (head * s + row) * dh
        for j in 0..<dh {
          q[target + j] = fused[base + head * dh + j]
          k[target + j] = fused[base + kvColumn + j]
          v[target + j] = fused[base + kvColumn + keyWidth + j]
        }
        i[head * s + row] = cap * tanh((fused[base + gateOffset + head] + gateBiases[head]) / cap)
        f[head * s + row] = cap * tanh((fused[base + gateOffset + nh + head] + gateBiases[nh + head]) / cap)
      }
    }
    queries = Tensor(shape: [1, nh, s, dh], data: q)
    keys = Tensor(shape: [1, nh, s, dh], data: k)
    values = Tensor(shape: [1, nh, s, dh], data: v)
    inputGates = Tensor(shape: [1, nh, s], data: i)
    forgetGates = Tensor(shape: [1, nh, s], data: f)
  }
}

extension XLlamaModel {
  /// Computes the mixing matrix `Cmix` (1, NH, S, S) of layer `layer` for a layer input `hidden` (S, D):
  /// the matrix with `h = Cmix · v` that MOHAWK's first stage aligns with attention.
  public func mixingMatrix(layer index: Int, hidden: Tensor) -> Tensor {
    let c = configuration
    let weights = layers[index]
    let s = hidden.shape[0]
    let d = c.hiddenSize
    precondition(hidden.shape == [s, d], "hidden must be (S, D)")
    let projected = 2 * c.headCount * c.headDim + 2 * c.keyValueHeadCount * c.headDim + 2 * c.headCount
    var normed = [Float](repeating: 0, count: s * d)
    Kernels.rmsNorm(hidden.data, rows: s, dim: d, weight: weights.inputNorm, eps: c.rmsNormEps, into: &normed)
    var fused = [Float](repeating: 0, count: s * projected)
    weights.mixerInput.apply(normed, count: s, into: &fused)
    let inputs = MixerInputs(fused: fused, rows: s, configuration: c, gateBiases: weights.gateBiases)
    return MLSTMCell.mixingMatrix(q: inputs.queries, k: inputs.keys, i: inputs.inputGates, f: inputs.forgetGates)
  }
}
