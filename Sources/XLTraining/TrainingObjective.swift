import Foundation

/// The three MOHAWK distillation stages, numbered as in the paper.
public enum MOHAWKStage: Int, Sendable, CaseIterable, Codable {
  case matrixOrientation = 1, hiddenStateAlignment = 2, endToEnd = 3
}

/// A loss over training batches that can add its gradients into a parameter store.
public protocol TrainingObjective: AnyObject {
  /// Loss of one batch, adding gradients into `parameters` (does not zero them).
  func lossAndGradients(batch: TokenBatch, parameters: ParameterStore) throws -> Float
}
