import CKernels
import Foundation
import XLTensors

/// An optimizer that updates the trainable parameters of a `ParameterStore` from their
/// gradients, and whose state can be saved and restored exactly for resuming a run.
public protocol Optimizer: AnyObject {
  /// Number of updates taken so far.
  var step: Int { get }
  /// Applies one update with learning rate `learningRate` to every parameter not frozen.
  func update(_ parameters: ParameterStore, learningRate: Float)
  /// The full state as tensors: `step` as a scalar, then per-parameter buffers.
  func stateTensors() -> [String: Tensor]
  /// Restores state written by `stateTensors()`; when `parameters` is given, every buffer must
  /// name one of its parameters and have that parameter's element count.
  func load(stateTensors: [String: Tensor], validatingAgainst parameters: ParameterStore?) throws
}

extension Optimizer {
  public func load(stateTensors: [String: Tensor]) throws {
    try load(stateTensors: stateTensors, validatingAgainst: nil)
  }
}

/// Keys shared by the optimizers' saved state.
enum OptimizerState {
  static let stepKey = "step"

  /// A step count as a scalar Float tensor, exact up to 2²⁴ = 16,777,216 steps.
  static func stepTensor(_ step: Int) -> Tensor { Tensor(shape: [], data: [Float(step)]) }

  static func readStep(_ tensors: [String: Tensor]) throws -> Int {
    guard let tensor = tensors[stepKey] else {
      throw TrainingError.invalidOptimizerState(key: stepKey, reason: "missing")
    }
    guard tensor.count == 1, let value = tensor.data.first, value >= 0, value.rounded() == value
    else {
      throw TrainingError.invalidOptimizerState(
        key: stepKey, reason: "expected one non-negative integer, found \(tensor.data.prefix(4))")
    }
    return Int(value)
  }

  /// Splits `prefix.name` keys into buffers, rejecting unknown keys and wrong shapes.
  static func readBuffers(
    _ tensors: [String: Tensor], prefixes: [String], parameters: ParameterStore?
  ) throws -> [String: [String: [Float]]] {
    var buffers: [String: [String: [Float]]] = [:]
    for prefix in prefixes { buffers[prefix] = [:] }
    for (key, tensor) in tensors where key != stepKey {
      guard let prefix = prefixes.first(where: { key.hasPrefix($0 + ".") }) else {
        throw TrainingError.invalidOptimizerState(
          key: key, reason: "unknown key; expected '\(stepKey)' or one starting with "
            + prefixes.map { "'\($0).'" }.joined(separator: " or "))
      }
      let name = String(key.dropFirst(prefix.count + 1))
      if let parameters {
        guard let value = parameters.value(name) else {
          throw TrainingError.invalidOptimizerState(key: key, reason: "no parameter '\(name)'")
        }
        guard value.count == tensor.count else {
          throw TrainingError.invalidOptimizerState(
            key: key, reason: "\(tensor.count) elements, expected \(value.count) as in "
              + "parameter '\(name)' of shape \(value.shape)")
        }
      }
      buffers[prefix]![name] = tensor.data
    }
    return buffers
  }
}

/// AdamW with decoupled weight decay, as PyTorch's `torch.optim.AdamW`.
///
/// For each trainable parameter p with gradient g, at step t (counting from 1):
/// ```
/// p ← p − lr · weightDecay · p
/// m ← β1 · m + (1 − β1) · g
/// v ← β2 · v + (1 − β2) · g²
/// p ← p − lr · (m / (1 − β1ᵗ)) / (sqrt(v / (1 − β2ᵗ)) + eps)
/// ```
/// Defaults are the xLlama recipe's (β 0.9 / 0.95, weight decay 0.1, eps 1e-8). Weight decay
/// applies to every parameter, as when all of them go to PyTorch's AdamW in one group, unless
/// its name matches one of `noDecayPatterns` (same matching as `ParameterStore.freeze`).
public final class AdamW: Optimizer {
  public let beta1: Float
  public let beta2: Float
  public let eps: Float
  public let weightDecay: Float
  public let noDecayPatterns: [String]
  public private(set) var step = 0
  /// First and second moments by parameter name, created at a parameter's first update.
  public private(set) var firstMoments: [String: [Float]] = [:]
  public private(set) var secondMoments: [String: [Float]] = [:]

  public init(
    beta1: Float = 0.9, beta2: Float = 0.95, eps: Float = 1e-8, weightDecay: Float = 0.1,
    noDecayPatterns: [String] = []
  ) {
    self.beta1 = beta1
    self.beta2 = beta2
    self.eps = eps
    self.weightDecay = weightDecay
    self.noDecayPatterns = noDecayPatterns
  }

  public func update(_ parameters: ParameterStore, learningRate: Float) {
    step += 1
    let biasCorrection1 = 1 - pow(beta1, Float(step))
    let biasCorrection2 = 1 - pow(beta2, Float(step))
    let stepSize = learningRate / biasCorrection1
    let inverseRootCorrection2 = 1 / biasCorrection2.squareRoot()

    for name in parameters.trainableNames {
      let decays = !noDecayPatterns.contains { ParameterStore.matches(name, pattern: $0) }
      let decayFactor = 1 - learningRate * (decays ? weightDecay : 0)
      let count = parameters.value(name)!.count
      if firstMoments[name] == nil {
        firstMoments[name] = [Float](repeating: 0, count: count)
        secondMoments[name] = [Float](repeating: 0, count: count)
      }
      let (beta1, beta2, eps) = (self.beta1, self.beta2, self.eps)

      // The force-unwrapped subscripts modify the dictionaries' buffers in place; binding
      // them to a `var` first would copy every moment buffer on each step.
      firstMoments[name]!.withUnsafeMutableBufferPointer { m in
      secondMoments[name]!.withUnsafeMutableBufferPointer { v in
      parameters.withGradient(name) { gradient in
      parameters.withValue(name) { value in
        let (p, mp, vp, gp) = (value.baseAddress!, m.baseAddress!, v.baseAddress!, gradient.baseAddress!)
        ElementwiseSplit.run(count: count) { range in
          xl_adamw_update(
            p + range.lowerBound, mp + range.lowerBound, vp + range.lowerBound, gp + range.lowerBound,
            range.count, beta1, beta2, eps, decayFactor, stepSize, inverseRootCorrection2)
        }
      }}}}
    }
  }

  /// Keys: `step`, `exp_avg.NAME` and `exp_avg_sq.NAME` (PyTorch's names for m and v), the
  /// buffers flattened to one dimension.
  public func stateTensors() -> [String: Tensor] {
    var tensors = [OptimizerState.stepKey: OptimizerState.stepTensor(step)]
    for (name, m) in firstMoments { tensors["exp_avg.\(name)"] = Tensor(shape: [m.count], data: m) }
    for (name, v) in secondMoments {
      tensors["exp_avg_sq.\(name)"] = Tensor(shape: [v.count], data: v)
    }
    return tensors
  }

  public func load(
    stateTensors: [String: Tensor], validatingAgainst parameters: ParameterStore?
  ) throws {
    let loadedStep = try OptimizerState.readStep(stateTensors)
    let buffers = try OptimizerState.readBuffers(
      stateTensors, prefixes: ["exp_avg", "exp_avg_sq"], parameters: parameters)
    let m = buffers["exp_avg"]!
    let v = buffers["exp_avg_sq"]!
    guard Set(m.keys) == Set(v.keys) else {
      let unpaired = Set(m.keys).symmetricDifference(v.keys).sorted()
      throw TrainingError.invalidOptimizerState(
        key: unpaired.first ?? "", reason: "exp_avg and exp_avg_sq name different parameters")
    }
    step = loadedStep
    firstMoments = m
    secondMoments = v
  }
}

/// Stochastic gradient descent with optional momentum and L2 weight decay, as PyTorch's
/// `torch.optim.SGD` without dampening or Nesterov:
/// `g ← g + weightDecay · p`, `b ← momentum · b + g` (b = g at the first step), `p ← p − lr · b`.
public final class SGD: Optimizer {
  public let momentum: Float
  public let weightDecay: Float
  public private(set) var step = 0
  /// Momentum buffers by parameter name; empty when `momentum` is 0.
  public private(set) var momentumBuffers: [String: [Float]] = [:]

  public init(momentum: Float = 0, weightDecay: Float = 0) {
    self.momentum = momentum
    self.weightDecay = weightDecay
  }

  public func update(_ parameters: ParameterStore, learningRate: Float) {
    step += 1
    let (momentum, weightDecay) = (self.momentum, self.weightDecay)
    for name in parameters.trainableNames {
      let count = parameters.value(name)!.count
      parameters.withGradient(name) { gradient in
      parameters.withValue(name) { value in
        guard momentum != 0 else {
          for i in 0..<count { value[i] -= learningRate * (gradient[i] + weightDecay * value[i]) }
          return
        }
        guard momentumBuffers[name] != nil else {
          let buffer = (0..<count).map { gradient[$0] + weightDecay * value[$0] }
          for i in 0..<count { value[i] -= learningRate * buffer[i] }
          momentumBuffers[name] = buffer
          return
        }
        // In place through the dictionary's subscript, so the buffer is not copied.
        momentumBuffers[name]!.withUnsafeMutableBufferPointer { buffer in
          for i in 0..<count {
            buffer[i] = momentum * buffer[i] + gradient[i] + weightDecay * value[i]
            value[i] -= learningRate * buffer[i]
          }
        }
      }}
    }
  }

  /// Keys: `step` and `momentum_buffer.NAME` (flat).
  public func stateTensors() -> [String: Tensor] {
    var tensors = [OptimizerState.stepKey: OptimizerState.stepTensor(step)]
    for (name, b) in momentumBuffers {
      tensors["momentum_buffer.\(name)"] = Tensor(shape: [b.count], data: b)
    }
    return tensors
  }

  public func load(
    stateTensors: [String: Tensor], validatingAgainst parameters: ParameterStore?
  ) throws {
    let loadedStep = try OptimizerState.readStep(stateTensors)
    let buffers = try OptimizerState.readBuffers(
      stateTensors, prefixes: ["momentum_buffer"], parameters: parameters)
    step = loadedStep
    momentumBuffers = buffers["momentum_buffer"]!
  }
}
