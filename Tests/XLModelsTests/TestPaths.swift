import Foundation

/// Where tests find shared fixtures, data and the default model.
enum TestPaths {
  static let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

  /// `XLLAMA_FIXTURES`, else `../shared/reference/fixtures` beside the package.
  static var fixtures: URL {
    if let path = ProcessInfo.processInfo.environment["XLLAMA_FIXTURES"] { return URL(fileURLWithPath: path) }
    return packageRoot.appendingPathComponent("../shared/reference/fixtures").standardized
  }

  /// A fixture file, or nil (with a note on stdout) when it is absent.
  static func fixture(_ relativePath: String) -> URL? {
    let url = fixtures.appendingPathComponent(relativePath)
    guard FileManager.default.fileExists(atPath: url.path) else {
      print("fixture \(url.path) not found; skipping")
      return nil
    }
    return url
  }

  /// The default model named by `XLLAMA_MODEL`, or nil (with a note) when unset or absent.
  static var defaultModel: String? {
    guard let path = ProcessInfo.processInfo.environment["XLLAMA_MODEL"], FileManager.default.fileExists(atPath: path) else {
      print("XLLAMA_MODEL is unset or missing; skipping the real-model test")
      return nil
    }
    return path
  }

  /// A fresh temporary folder; the caller removes it.
  static func temporaryFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("xllama-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }
}

/// The largest |a − b| relative to max(1, max |b|), the tolerance convention of these tests.
func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
  precondition(a.count == b.count)
  var worst: Float = 0
  var scale: Float = 1
  for index in a.indices {
    worst = max(worst, abs(a[index] - b[index]))
    scale = max(scale, abs(b[index]))
  }
  return worst / scale
}
