import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file writes that never leave a half-written file under the final name: the data goes
/// to a temporary file in the same folder, which is then renamed over the target (rename is
/// atomic within one file system on POSIX).
public enum AtomicFile {
  /// A unique temporary name beside `url`, starting with a dot so listings skip it.
  public static func temporaryURL(for url: URL) -> URL {
    let folder = url.deletingLastPathComponent()
    let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    return folder.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).\(suffix).tmp")
  }

  public static func write(_ data: Data, to url: URL) throws {
    let temporary = temporaryURL(for: url)
    do {
      try data.write(to: temporary)
    } catch {
      throw TrainingError.fileOperationFailed(
        path: temporary.path, operation: "write", reason: error.localizedDescription)
    }
    do {
      try rename(temporary, to: url)
    } catch {
      try? FileManager.default.removeItem(at: temporary)
      throw error
    }
  }

  /// Renames `source` over `destination`, replacing it.
  static func rename(_ source: URL, to destination: URL) throws {
    #if canImport(Glibc)
    let result = Glibc.rename(source.path, destination.path)
    #else
    let result = Darwin.rename(source.path, destination.path)
    #endif
    guard result == 0 else {
      throw TrainingError.fileOperationFailed(
        path: destination.path, operation: "rename \(source.lastPathComponent) to",
        reason: String(cString: strerror(errno)))
    }
  }
}

/// Appends one JSON object per line to a metrics file (JSON Lines), creating it if needed.
///
/// Each `append` writes and flushes one complete line, so a run that stops keeps every step
/// logged before it; resuming appends to the same file.
public final class MetricsLogger {
  public let url: URL
  private let handle: FileHandle
  private let encoder: JSONEncoder

  public init(url: URL) throws {
    self.url = url
    if !FileManager.default.fileExists(atPath: url.path) {
      guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
        throw TrainingError.fileOperationFailed(
          path: url.path, operation: "create", reason: "could not create the file")
      }
    }
    do {
      handle = try FileHandle(forWritingTo: url)
      try handle.seekToEnd()
    } catch {
      throw TrainingError.fileOperationFailed(
        path: url.path, operation: "open for appending", reason: error.localizedDescription)
    }
    encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
  }

  deinit { try? handle.close() }

  public func append<Record: Encodable>(_ record: Record) throws {
    var line = try encoder.encode(record)
    line.append(0x0A)
    do {
      try handle.write(contentsOf: line)
    } catch {
      throw TrainingError.fileOperationFailed(
        path: url.path, operation: "append to", reason: error.localizedDescription)
    }
  }
}

/// A snapshot of a running stage for progress display and metrics logs.
public struct TrainingProgress: Sendable, Equatable, Codable, CustomStringConvertible {
  /// Stage name, for example "1 matrix orientation".
  public var stage: String
  /// Updates finished so far in this stage.
  public var step: Int
  public var totalSteps: Int
  public var loss: Float
  public var learningRate: Float
  public var tokensPerSecond: Double
  /// Estimated seconds until the stage ends.
  public var secondsRemaining: Double

  public init(
    stage: String, step: Int, totalSteps: Int, loss: Float, learningRate: Float,
    tokensPerSecond: Double, secondsRemaining: Double
  ) {
    self.stage = stage
    self.step = step
    self.totalSteps = totalSteps
    self.loss = loss
    self.learningRate = learningRate
    self.tokensPerSecond = tokensPerSecond
    self.secondsRemaining = secondsRemaining
  }

  /// Builds a snapshot whose ETA assumes the remaining steps take as long as the mean so far.
  public init(
    stage: String, step: Int, totalSteps: Int, loss: Float, learningRate: Float,
    tokensSeen: Int, elapsedSeconds: Double
  ) {
    let rate = elapsedSeconds > 0 ? Double(tokensSeen) / elapsedSeconds : 0
    let perStep = step > 0 ? elapsedSeconds / Double(step) : 0
    self.init(
      stage: stage, step: step, totalSteps: totalSteps, loss: loss, learningRate: learningRate,
      tokensPerSecond: rate, secondsRemaining: perStep * Double(max(0, totalSteps - step)))
  }

  /// One line, e.g. `stage 2 step 120/1000 loss 0.4213 lr 2.00e-04 812 tok/s ETA 1h02m`.
  public var description: String {
    let lr = String(format: "%.2e", Double(learningRate))
    let lossText = String(format: "%.4f", Double(loss))
    let rate = String(format: "%.0f", tokensPerSecond)
    return "stage \(stage) step \(step)/\(totalSteps) loss \(lossText) lr \(lr) "
      + "\(rate) tok/s ETA \(Self.formatDuration(secondsRemaining))"
  }

  /// Seconds as `45s`, `12m05s` or `3h07m`.
  public static func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let whole = Int(seconds.rounded())
    if whole < 60 { return "\(whole)s" }
    if whole < 3600 { return "\(whole / 60)m" + String(format: "%02ds", whole % 60) }
    return "\(whole / 3600)h" + String(format: "%02dm", (whole % 3600) / 60)
  }
}

/// Returns `loss` when finite and throws `TrainingError.nonFiniteLoss` naming the stage and
/// step otherwise, so a diverging run stops with a message instead of training on NaN.
@discardableResult
public func checkFinite(loss: Float, stage: String, step: Int) throws -> Float {
  guard loss.isFinite else { throw TrainingError.nonFiniteLoss(stage: stage, step: step, value: loss) }
  return loss
}
