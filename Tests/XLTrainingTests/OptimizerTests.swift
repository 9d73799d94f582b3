import CKernels
import Foundation
import Testing
import XLTensors
@testable import XLTraining

@Suite("Optimizers")
struct OptimizerTests {
  @Test("AdamW two steps by hand")
  func adamWTwoSteps() {
    let store = ParameterStore(["w": Tensor(shape: [3], data: [0.5, -1.0, 2.0])])
    let optimizer = AdamW()
    let gradients: [[Float]] = [[0.1, -0.2, 0.3], [-0.4, 0.05, 0.3]]
    let learningRates: [Float] = [1e-2, 5e-3]

    var p: [Double] = [0.5, -1.0, 2.0]
    var m: [Double] = [0, 0, 0], v: [Double] = [0, 0, 0]
    for (t, (g, lr)) in zip(gradients, learningRates).enumerated() {
      store.withGradient("w") { for i in 0..<3 { $0[i] = g[i] } }
      optimizer.update(store, learningRate: lr)

      let step = Double(t + 1)
      for i in 0..<3 {
        let gi = Double(g[i]), lrD = Double(lr)
        p[i] -= lrD * 0.1 * p[i]
        m[i] = 0.9 * m[i] + 0.1 * gi
        v[i] = 0.95 * v[i] + 0.05 * gi * gi
        let mHat = m[i] / (1 - pow(0.9, step))
        let vHat = v[i] / (1 - pow(0.95, step))
        p[i] -= lrD * mHat / (vHat.squareRoot() + 1e-8)
      }
    }
    let result = store.value("w")!.data
    for i in 0..<3 {
      #expect(abs(Double(result[i]) - p[i]) < 1e-6, "w[\(i)] = \(result[i]), expected \(p[i]) ± 1e-6")
    }
    #expect(optimizer.step == 2)
  }

  @Test("AdamW state round trip resumes exactly")
  func adamWResume() throws {
    func makeStore() -> ParameterStore {
      ParameterStore([
        "a": Tensor(shape: [2, 2], data: [1, 2, 3, 4]),
        "b": Tensor(shape: [3], data: [-1, 0, 1]),
      ])
    }
    func setGradients(_ store: ParameterStore, step: Int) {
      for name in store.names {
        store.withGradient(name) { g in
          for i in g.indices { g[i] = sin(Float(step * 7 + i)) }
        }
      }
    }
    let continuous = makeStore()
    let reference = AdamW()
    for step in 0..<4 {
      setGradients(continuous, step: step)
      reference.update(continuous, learningRate: 0.01)
    }

    let first = makeStore()
    let interrupted = AdamW()
    for step in 0..<2 {
      setGradients(first, step: step)
      interrupted.update(first, learningRate: 0.01)
    }
    let saved = interrupted.stateTensors()
    #expect(saved["step"]?.data == [2])
    #expect(saved["exp_avg.a"]?.count == 4)
    #expect(saved["exp_avg_sq.b"]?.count == 3)

    let resumedStore = makeStore()
    for name in first.names { try resumedStore.setValue(name, first.value(name)!) }
    let resumed = AdamW()
    try resumed.load(stateTensors: saved, validatingAgainst: resumedStore)
    for step in 2..<4 {
      setGradients(resumedStore, step: step)
      resumed.update(resumedStore, learningRate: 0.01)
    }
    for name in continuous.names {
      #expect(resumedStore.value(name) == continuous.value(name), "parameter \(name)")
    }
  }

  @Test("AdamW state rejects bad tensors")
  func adamWRejectsBadState() {
    let store = ParameterStore(["w": Tensor(zeros: [3])])
    let optimizer = AdamW()
    #expect(throws: TrainingError.self) {
      try optimizer.load(stateTensors: ["exp_avg.w": Tensor(zeros: [3])])
    }
    let wrongCount: [String: Tensor] = [
      "step": Tensor(shape: [], data: [1]),
      "exp_avg.w": Tensor(zeros: [4]), "exp_avg_sq.w": Tensor(zeros: [4]),
    ]
    #expect(throws: TrainingError.self) {
      try optimizer.load(stateTensors: wrongCount, validatingAgainst: store)
    }
    #expect(throws: TrainingError.self) {
      try optimizer.load(stateTensors: ["step": Tensor(shape: [], data: [1]), "m.w": Tensor(zeros: [3])])
    }
  }

  @Test("SGD with momentum")
  func sgdMomentum() throws {
    let store = ParameterStore(["w": Tensor(shape: [1], data: [1])])
    let optimizer = SGD(momentum: 0.9)
    store.withGradient("w") { $0[0] = 1 }
    optimizer.update(store, learningRate: 0.1)
    #expect(store.value("w")!.data == [0.9])
    optimizer.update(store, learningRate: 0.1)
    // buffer 0.9·1 + 1 = 1.9, so w = 0.9 − 0.19.
    #expect(abs(store.value("w")!.data[0] - 0.71) < 1e-6)

    let restored = SGD(momentum: 0.9)
    try restored.load(stateTensors: optimizer.stateTensors(), validatingAgainst: store)
    #expect(restored.momentumBuffers == optimizer.momentumBuffers)
    #expect(restored.step == 2)
  }

  @Test("frozen parameters stay fixed")
  func freezing() {
    let store = ParameterStore([
      "model.embed_tokens.weight": Tensor(repeating: 1, shape: [2]),
      "model.layers.0.mlp.up_proj.weight": Tensor(repeating: 1, shape: [2]),
      "model.layers.0.self_attn.q.weight": Tensor(repeating: 1, shape: [2]),
      "lm_head.weight": Tensor(repeating: 1, shape: [2]),
    ])
    let frozen = store.freeze(matching: ["mlp", "embed_tokens", "lm_*"])
    #expect(Set(frozen) == [
      "model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "lm_head.weight",
    ])
    for name in store.names { store.withGradient(name) { $0.update(repeating: 1) } }
    SGD().update(store, learningRate: 0.5)
    #expect(store.value("model.layers.0.self_attn.q.weight")!.data == [0.5, 0.5])
    #expect(store.value("model.layers.0.mlp.up_proj.weight")!.data == [1, 1])
    #expect(store.value("lm_head.weight")!.data == [1, 1])
    store.unfreeze(matching: ["lm_head"])
    #expect(!store.frozen.contains("lm_head.weight"))
  }

  @Test("glob and substring patterns")
  func patterns() {
    #expect(ParameterStore.matches("model.layers.3.mlp.up_proj.weight", pattern: "mlp"))
    #expect(ParameterStore.matches("model.layers.3.mlp.up_proj.weight", pattern: "model.layers.*.mlp.*"))
    #expect(!ParameterStore.matches("model.layers.3.mlp.up_proj.weight", pattern: "*.bias"))
    #expect(ParameterStore.matches("model.layers.3.self_attn.q.weight", pattern: "*.?.weight"))
    #expect(!ParameterStore.matches("lm_head.weight", pattern: "embed"))
  }

  @Test("clipping by global norm")
  func clipping() {
    let store = ParameterStore(["a": Tensor(zeros: [2]), "b": Tensor(zeros: [1]), "c": Tensor(zeros: [1])])
    store.withGradient("a") { $0[0] = 3; $0[1] = 0 }
    store.withGradient("b") { $0[0] = 4 }
    store.withGradient("c") { $0[0] = 100 }
    store.freeze(matching: ["c"])
    let norm = store.clipGradients(maxNorm: 1)
    #expect(norm == 5)
    #expect(abs(store.globalGradientNorm() - 1) < 1e-5, "norm after clipping, tolerance 1e-5")
    #expect(abs(store.gradient("a")!.data[0] - 0.6) < 1e-6)
    #expect(store.gradient("c")!.data[0] == 100)

    let small = store.clipGradients(maxNorm: 10)
    #expect(abs(small - 1) < 1e-5)
    #expect(abs(store.gradient("b")!.data[0] - 0.8) < 1e-6, "no change below the threshold")
  }

  @Test("accumulation averages micro-batches")
  func accumulation() {
    let store = ParameterStore(["w": Tensor(zeros: [2])])
    for microBatch: [Float] in [[1, 2], [3, 6]] {
      store.withGradient("w") { g in for i in 0..<2 { g[i] += microBatch[i] } }
    }
    store.scaleGradients(by: 1.0 / 2)
    #expect(store.gradient("w")!.data == [2, 4])
    store.zeroGradients()
    #expect(store.gradient("w")!.data == [0, 0])
  }
}

@Suite("Learning-rate schedules")
struct ScheduleTests {
  let peak: Float = 1

  @Test("warmup ramps to the peak")
  func warmup() {
    for schedule in [LearningRateSchedule.constant(warmup: 4), .linear(warmup: 4), .cosine(warmup: 4),
                     .warmupStableDecay(warmup: 4, decayFraction: 0.2)] {
      #expect(schedule.learningRate(step: 0, totalSteps: 100, peak: peak) == 0.25, "\(schedule)")
      #expect(schedule.learningRate(step: 3, totalSteps: 100, peak: peak) == 1, "\(schedule)")
      #expect(schedule.learningRate(step: 4, totalSteps: 100, peak: peak) == 1, "\(schedule)")
    }
  }

  @Test("linear and cosine decay")
  func decay() {
    let linear = LearningRateSchedule.linear(warmup: 10)
    #expect(linear.learningRate(step: 55, totalSteps: 100, peak: peak) == 0.5)
    #expect(linear.learningRate(step: 99, totalSteps: 100, peak: peak) == 1.0 / 90)
    #expect(linear.learningRate(step: 100, totalSteps: 100, peak: peak) == 0)

    let cosine = LearningRateSchedule.cosine(warmup: 10)
    #expect(abs(cosine.learningRate(step: 55, totalSteps: 100, peak: peak) - 0.5) < 1e-6)
    #expect(cosine.learningRate(step: 100, totalSteps: 100, peak: peak) == 0)
    #expect(LearningRateSchedule.constant(warmup: 0).learningRate(step: 500, totalSteps: 100, peak: 2) == 2)
  }

  @Test("warmup-stable-decay boundaries")
  func warmupStableDecay() {
    let schedule = LearningRateSchedule.warmupStableDecay(warmup: 10, decayFraction: 0.2)
    #expect(schedule.learningRate(step: 79, totalSteps: 100, peak: peak) == 1)
    #expect(schedule.learningRate(step: 80, totalSteps: 100, peak: peak) == 1)
    #expect(schedule.learningRate(step: 90, totalSteps: 100, peak: peak) == 0.5)
    #expect(schedule.learningRate(step: 99, totalSteps: 100, peak: peak) == 0.05)
    #expect(schedule.learningRate(step: 100, totalSteps: 100, peak: peak) == 0)
  }
}

/// The AdamW and SGD kernels against the plain Swift formula, on both the AVX-512 and the
/// portable C path, with tensor lengths that are not multiples of 16 and one long enough to be
/// split over two threads. Tolerance: 1e-6 relative (the kernels round each operation as the
/// formula does, so in practice they agree exactly).
@Suite("Optimizer kernels", .serialized)
struct OptimizerKernelTests {
  static let lengths = ["short": 37, "long": 70_001]

  static func randomStore(seed: UInt64) -> ParameterStore {
    var random = SplitMix64(seed: seed)
    return ParameterStore(lengths.mapValues { count in
      Tensor(shape: [count], data: (0..<count).map { _ in random.nextNormal() })
    })
  }

  static func setRandomGradients(_ store: ParameterStore, seed: UInt64) {
    var random = SplitMix64(seed: seed)
    for name in store.names {
      store.withGradient(name) { for i in $0.indices { $0[i] = random.nextNormal() * 0.1 } }
    }
  }

  static func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) / max(abs($1), 1e-30) }.max() ?? 0
  }

  @Test("AdamW kernel equals the formula", arguments: [false, true])
  func adamWKernel(portableOnly: Bool) {
    xl_training_set_portable_only(portableOnly ? 1 : 0)
    defer { xl_training_set_portable_only(0) }
    let store = Self.randomStore(seed: 1)
    let optimizer = AdamW(noDecayPatterns: ["short"])
    let (beta1, beta2, eps): (Float, Float, Float) = (0.9, 0.95, 1e-8)
    var values = Dictionary(uniqueKeysWithValues: store.names.map { ($0, store.value($0)!.data) })
    var m = values.mapValues { [Float](repeating: 0, count: $0.count) }
    var v = m

    for (step, learningRate) in [Float(1e-2), 5e-3, 2e-3].enumerated() {
      Self.setRandomGradients(store, seed: UInt64(10 + step))
      optimizer.update(store, learningRate: learningRate)

      let t = Float(step + 1)
      let stepSize = learningRate / (1 - pow(beta1, t))
      let inverseRootCorrection2 = 1 / (1 - pow(beta2, t)).squareRoot()
      for name in store.names {
        let decayFactor = 1 - learningRate * (name == "short" ? 0 : 0.1)
        let g = store.gradient(name)!.data
        for i in g.indices {
          m[name]![i] = beta1 * m[name]![i] + (1 - beta1) * g[i]
          v[name]![i] = beta2 * v[name]![i] + (1 - beta2) * g[i] * g[i]
          let denominator = v[name]![i].squareRoot() * inverseRootCorrection2 + eps
          values[name]![i] = values[name]![i] * decayFactor - stepSize * m[name]![i] / denominator
        }
      }
    }
    for name in store.names {
      let valueError = Self.relativeError(store.value(name)!.data, values[name]!)
      #expect(valueError <= 1e-6, "\(name): values differ by \(valueError) relative")
      let firstError = Self.relativeError(optimizer.firstMoments[name]!, m[name]!)
      #expect(firstError <= 1e-6, "\(name): first moments differ by \(firstError) relative")
      let secondError = Self.relativeError(optimizer.secondMoments[name]!, v[name]!)
      #expect(secondError <= 1e-6, "\(name): second moments differ by \(secondError) relative")
    }
  }

  @Test("SGD momentum in place equals the formula")
  func sgdMomentum() {
    let store = Self.randomStore(seed: 2)
    let optimizer = SGD(momentum: 0.9, weightDecay: 0.01)
    var values = Dictionary(uniqueKeysWithValues: store.names.map { ($0, store.value($0)!.data) })
    var buffers: [String: [Float]] = [:]
    for step in 0..<3 {
      Self.setRandomGradients(store, seed: UInt64(20 + step))
      optimizer.update(store, learningRate: 0.1)
      for name in store.names {
        let g = store.gradient(name)!.data
        var b = buffers[name] ?? []
        for i in g.indices {
          if step == 0 {
            b.append(g[i] + 0.01 * values[name]![i])
          } else {
            b[i] = 0.9 * b[i] + g[i] + 0.01 * values[name]![i]
          }
          values[name]![i] -= 0.1 * b[i]
        }
        buffers[name] = b
      }
    }
    for name in store.names {
      let error = Self.relativeError(store.value(name)!.data, values[name]!)
      #expect(error <= 1e-6, "\(name): values differ by \(error) relative")
    }
  }
}
