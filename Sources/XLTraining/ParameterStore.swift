import CKernels
import Foundation
import XLTensors

/// Named trainable tensors with a gradient buffer of the same shape beside each.
///
/// A training step zeroes the gradients, lets backward passes add into them (over one or more
/// micro-batches), optionally averages and clips them, and hands the store to an optimizer.
/// Frozen parameters keep their gradient buffers but are skipped by clipping and optimizers.
public final class ParameterStore {
  /// Parameter names in the order they were added; optimizers visit them in this order.
  public private(set) var names: [String] = []
  public private(set) var values: [Tensor] = []
  public private(set) var gradients: [Tensor] = []
  public private(set) var frozen: Set<String> = []
  private var indices: [String: Int] = [:]

  public init() {}

  /// Creates a store holding `tensors`, added in order of their sorted names.
  public convenience init(_ tensors: [String: Tensor]) {
    self.init()
    for name in tensors.keys.sorted() { add(name, tensors[name]!) }
  }

  /// Adds a parameter with a zero gradient. Precondition: the name is new.
  public func add(_ name: String, _ value: Tensor) {
    precondition(indices[name] == nil, "parameter '\(name)' added twice")
    indices[name] = names.count
    names.append(name)
    values.append(value)
    gradients.append(Tensor(zeros: value.shape))
  }

  public func index(of name: String) -> Int? { indices[name] }

  public func value(_ name: String) -> Tensor? { indices[name].map { values[$0] } }

  public func gradient(_ name: String) -> Tensor? { indices[name].map { gradients[$0] } }

  /// All parameters by name, for saving a checkpoint.
  public var tensors: [String: Tensor] {
    Dictionary(uniqueKeysWithValues: zip(names, values))
  }

  /// Names that are not frozen, in store order.
  public var trainableNames: [String] { names.filter { !frozen.contains($0) } }

  /// Runs `body` on the parameter's elements in place. Precondition: the name exists.
  public func withValue<R>(
    _ name: String, _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
  ) rethrows -> R {
    guard let index = indices[name] else { preconditionFailure("no parameter '\(name)'") }
    return try values[index].data.withUnsafeMutableBufferPointer { try body($0) }
  }

  /// Runs `body` on the parameter's gradient in place. Precondition: the name exists.
  public func withGradient<R>(
    _ name: String, _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
  ) rethrows -> R {
    guard let index = indices[name] else { preconditionFailure("no parameter '\(name)'") }
    return try gradients[index].data.withUnsafeMutableBufferPointer { try body($0) }
  }

  /// Runs `body` on the parameter's value (read-only) and its gradient (writable) together,
  /// the usual pair a backward pass needs.
  public func withValueAndGradient<R>(
    _ name: String,
    _ body: (UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) throws -> R
  ) rethrows -> R {
    guard let index = indices[name] else { preconditionFailure("no parameter '\(name)'") }
    return try values[index].data.withUnsafeBufferPointer { value in
      try gradients[index].data.withUnsafeMutableBufferPointer { try body(value, $0) }
    }
  }

  /// Replaces a parameter's value; the shape must stay the same.
  public func setValue(_ name: String, _ value: Tensor) throws {
    guard let index = indices[name] else { throw TensorError.missingTensor(name) }
    guard values[index].shape == value.shape else {
      throw TensorError.shapeMismatch(name: name, expected: values[index].shape, found: value.shape)
    }
    values[index] = value
  }

  // MARK: Gradients

  public func zeroGradients() {
    for index in gradients.indices {
      gradients[index].data.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }
  }

  /// Multiplies every gradient by `factor`.
  ///
  /// Gradient accumulation: backward passes over k micro-batches add into the same buffers,
  /// then `scaleGradients(by: 1 / k)` turns the sum into the mean over micro-batches, so the
  /// result equals one step on the whole batch when each micro-batch loss is a mean.
  public func scaleGradients(by factor: Float) {
    for index in gradients.indices { scale(index, by: factor) }
  }

  /// Multiplies gradient `index` by `factor`, on two threads for large tensors.
  private func scale(_ index: Int, by factor: Float) {
    gradients[index].data.withUnsafeMutableBufferPointer { buffer in
      guard let start = buffer.baseAddress else { return }
      let base = UncheckedPointer(start)
      ElementwiseSplit.run(count: buffer.count) { range in
        xl_scale(base.pointer + range.lowerBound, range.count, factor)
      }
    }
  }

  /// Computes the L2 norm of all trainable gradients taken as one vector. Squares are summed in
  /// Double, tensor by tensor, a large tensor in two halves on two threads. The order is fixed
  /// for a given machine, so repeated runs there give the same norm.
  public func globalGradientNorm() -> Float {
    var squares: Double = 0
    for (index, name) in names.enumerated() where !frozen.contains(name) {
      gradients[index].data.withUnsafeBufferPointer { buffer in
        guard let start = buffer.baseAddress else { return }
        withUnsafeTemporaryAllocation(of: Double.self, capacity: 2) { halves in
          halves.initialize(repeating: 0)
          let base = UncheckedPointer(UnsafeMutablePointer(mutating: start))
          let sums = UncheckedSums(pointer: halves.baseAddress!)
          // Each range writes its own slot: the first range starts at 0, the second after it.
          ElementwiseSplit.run(count: buffer.count) { range in
            sums.pointer[range.lowerBound == 0 ? 0 : 1] = xl_sum_of_squares(base.pointer + range.lowerBound, range.count)
          }
          squares += halves[0] + halves[1]
        }
      }
    }
    return Float(squares.squareRoot())
  }

  /// Clips by global norm as `torch.nn.utils.clip_grad_norm_`: when the norm of all trainable
  /// gradients exceeds `maxNorm`, every one is multiplied by `maxNorm / (norm + 1e-6)`.
  /// Returns the norm before clipping, which may be non-finite; such gradients are left as
  /// they are so the caller can report them.
  @discardableResult
  public func clipGradients(maxNorm: Float) -> Float {
    let norm = globalGradientNorm()
    guard norm.isFinite, norm > maxNorm else { return norm }
    let factor = maxNorm / (norm + 1e-6)
    for (index, name) in names.enumerated() where !frozen.contains(name) { scale(index, by: factor) }
    return norm
  }

  // MARK: Freezing

  /// Freezes every parameter whose name matches one of `patterns` and returns the names it
  /// froze. A pattern containing `*` or `?` is a glob over the whole name, where `*` matches
  /// any run of characters (dots included) and `?` one character. Any other pattern matches as
  /// a substring, so `mlp` freezes every MLP weight and `embed_tokens` the embedding.
  @discardableResult
  public func freeze(matching patterns: [String]) -> [String] {
    let matched = names.filter { name in patterns.contains { Self.matches(name, pattern: $0) } }
    frozen.formUnion(matched)
    return matched
  }

  /// Unfreezes every parameter whose name matches one of `patterns` (same rules as `freeze`).
  public func unfreeze(matching patterns: [String]) {
    for name in names where patterns.contains(where: { Self.matches(name, pattern: $0) }) {
      frozen.remove(name)
    }
  }

  public func unfreezeAll() { frozen.removeAll() }

  /// Returns whether `name` matches `pattern` under the rules of `freeze(matching:)`.
  public static func matches(_ name: String, pattern: String) -> Bool {
    if pattern.contains("*") || pattern.contains("?") {
      return globMatches(Array(name.unicodeScalars), Array(pattern.unicodeScalars))
    }
    return name.contains(pattern)
  }

  /// Iterative glob matching with backtracking to the last `*`, linear in practice.
  private static func globMatches(_ text: [Unicode.Scalar], _ pattern: [Unicode.Scalar]) -> Bool {
    var t = 0, p = 0
    var starPattern = -1, starText = 0
    while t < text.count {
      if p < pattern.count && (pattern[p] == "?" || pattern[p] == text[t]) {
        t += 1
        p += 1
      } else if p < pattern.count && pattern[p] == "*" {
        starPattern = p
        starText = t
        p += 1
      } else if starPattern >= 0 {
        p = starPattern + 1
        starText += 1
        t = starText
      } else {
        return false
      }
    }
    while p < pattern.count && pattern[p] == "*" { p += 1 }
    return p == pattern.count
  }
}

/// A pointer handed to the threads of `ElementwiseSplit`, which touch disjoint ranges of it.
private struct UncheckedPointer: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<Float>
  init(_ pointer: UnsafeMutablePointer<Float>) { self.pointer = pointer }
}

/// The two partial sums of a split reduction, each slot written by one thread.
private struct UncheckedSums: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<Double>
}
