import Foundation
import XLTensors

/// The cursor of a `Batcher`. Save it with a checkpoint and pass it back to resume with the
/// same batches.
public struct BatcherPosition: Codable, Sendable, Equatable {
  /// Passes over the data finished so far.
  public var epoch: Int
  /// Index of the next window in this epoch's shuffled order.
  public var index: Int

  public init(epoch: Int = 0, index: Int = 0) {
    self.epoch = epoch
    self.index = index
  }
}

/// One batch of training rows: `targets` is `inputs` shifted left by one token.
public struct TokenBatch: Sendable, Equatable {
  public var rows: Int
  public var contextLength: Int
  /// (rows, S) ids fed to the model.
  public var inputs: [Int32]
  /// (rows, S) ids to predict: `targets[r, t] = window[r][t + 1]`.
  public var targets: [Int32]
  /// Epoch of the batch's first row.
  public var epoch: Int
}

/// Deterministic batches of context-length windows drawn from token shards.
///
/// Each shard is cut into non-overlapping windows of S + 1 ids starting at multiples of S
/// (window k covers ids kS ... kS + S, so consecutive windows share one id). Within the
/// windowed part of a shard, every id except the first is a target once per epoch. Windows never cross shards; a tail
/// shorter than S + 1 ids is skipped. Epoch e visits every window once in an order shuffled
/// by Fisher-Yates with `SplitMix64(seed: seed ^ mix(e))`, so a seed and a position fully
/// determine what comes next. A batch that reaches the end of an epoch continues with the next
/// epoch's order.
public final class Batcher {
  public let contextLength: Int
  public let batchSize: Int
  public let seed: UInt64
  public private(set) var position: BatcherPosition
  private let shards: [TokenShardReader]
  /// Windows as (shard index, start offset), in file order.
  private let windows: [(shard: Int, start: Int)]
  private var order: [Int] = []
  private var orderEpoch = -1

  public var windowsPerEpoch: Int { windows.count }

  public init(
    shards: [TokenShardReader], contextLength: Int, batchSize: Int, seed: UInt64,
    position: BatcherPosition = BatcherPosition()
  ) throws {
    guard contextLength > 0 else {
      throw TrainingError.invalidConfiguration(
        name: "context length", value: "\(contextLength)", expected: "at least 1")
    }
    guard batchSize > 0 else {
      throw TrainingError.invalidConfiguration(
        name: "batch size", value: "\(batchSize)", expected: "at least 1")
    }
    var windows: [(shard: Int, start: Int)] = []
    for (index, shard) in shards.enumerated() where shard.count > contextLength {
      for k in 0..<((shard.count - 1) / contextLength) {
        windows.append((index, k * contextLength))
      }
    }
    guard !windows.isEmpty else {
      throw TrainingError.notEnoughTokens(
        available: shards.map(\.count).max() ?? 0, required: contextLength + 1)
    }
    guard position.epoch >= 0, position.index >= 0, position.index <= windows.count else {
      throw TrainingError.invalidConfiguration(
        name: "batcher position", value: "epoch \(position.epoch), index \(position.index)",
        expected: "a non-negative epoch and an index in 0...\(windows.count)")
    }
    self.shards = shards
    self.windows = windows
    self.contextLength = contextLength
    self.batchSize = batchSize
    self.seed = seed
    self.position = position
  }

  /// Returns the shuffled window order of `epoch`.
  func windowOrder(epoch: Int) -> [Int] {
    var generator = SplitMix64(seed: seed ^ SplitMix64.mix(UInt64(epoch)))
    var order = Array(0..<windows.count)
    if order.count > 1 {
      for i in stride(from: order.count - 1, to: 0, by: -1) {
        order.swapAt(i, generator.nextIndex(below: i + 1))
      }
    }
    return order
  }

  public func nextBatch() -> TokenBatch {
    let width = contextLength
    var inputs = [Int32](repeating: 0, count: batchSize * width)
    var targets = [Int32](repeating: 0, count: batchSize * width)
    var window = [Int32](repeating: 0, count: width + 1)
    if position.index >= windows.count { position = BatcherPosition(epoch: position.epoch + 1) }
    let firstEpoch = position.epoch

    for row in 0..<batchSize {
      if position.index >= windows.count { position = BatcherPosition(epoch: position.epoch + 1) }
      if orderEpoch != position.epoch {
        order = windowOrder(epoch: position.epoch)
        orderEpoch = position.epoch
      }
      let (shard, start) = windows[order[position.index]]
      window.withUnsafeMutableBufferPointer {
        shards[shard].copyIds(start..<(start + width + 1), into: $0.baseAddress!)
      }
      for t in 0..<width {
        inputs[row * width + t] = window[t]
        targets[row * width + t] = window[t + 1]
      }
      position.index += 1
    }
    return TokenBatch(
      rows: batchSize, contextLength: width, inputs: inputs, targets: targets, epoch: firstEpoch)
  }
}
