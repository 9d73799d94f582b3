import Foundation
import XLlama

let modelOption = OptionSpec(name: "--model", valueName: "PATH", help: "a .gguf file or a Hugging Face folder (teacher or student)")
let threadsOption = OptionSpec(name: "--threads", valueName: "N", help: "threads for matrix products", defaultDescription: "2")

/// Sets the BLAS thread count from `--threads`.
func applyThreads(_ options: ParsedOptions) throws {
  BLAS.setThreadCount(try options.integer("--threads", default: 2, range: 1...256))
}

/// Loads `--model`, saying on stderr what was loaded and how long it took.
func loadModel(_ options: ParsedOptions, option: String = "--model", quiet: Bool = false) throws -> LoadedModel {
  let path = try options.required(option)
  let start = Date()
  let loaded = try ModelLoader.load(path)
  if !quiet {
    let c = loaded.configuration
    let kind = c.isStudent ? "xLlama student" : "Llama teacher"
    stderrLine(String(
      format: "loaded %@ (%@, %d layers, width %d, %@) in %.1f s",
      kind, loaded.format, c.layerCount, c.hiddenSize, formatCount(parameterCount(c)), Date().timeIntervalSince(start)))
  }
  return loaded
}

func stderrLine(_ text: String) {
  FileHandle.standardError.write(Data((text + "\n").utf8))
}

func writeStdout(_ text: String) {
  FileHandle.standardOutput.write(Data(text.utf8))
}

/// Parameters of a model of this configuration (embedding and lm_head counted once each).
func parameterCount(_ c: ModelConfiguration) -> Int {
  let d = c.hiddenSize
  let q = c.headCount * c.headDim
  let kv = c.keyValueHeadCount * c.headDim
  var perLayer = 2 * d + 3 * d * c.intermediateSize + d * q * 2 + 2 * d * kv
  if c.isStudent { perLayer += d * q + 2 * (d * c.headCount + c.headCount) + q }
  let output = c.tieWordEmbeddings ? 0 : c.vocabularySize * d
  return c.vocabularySize * d + c.layerCount * perLayer + d + output
}

func formatCount(_ count: Int) -> String {
  count >= 1_000_000_000 ? String(format: "%.2fB parameters", Double(count) / 1e9)
    : String(format: "%.1fM parameters", Double(count) / 1e6)
}

/// Peak resident memory of this process in bytes (VmHWM), or nil where /proc is absent.
func peakResidentBytes() -> Int? {
  guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
  for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
    let fields = line.split(separator: " ")
    if fields.count >= 2, let kilobytes = Int(fields[1]) { return kilobytes * 1024 }
  }
  return nil
}

/// Parses a JSON array of integers such as `[1, 2, 3]`.
func parseIDs(_ text: String, option: String) throws -> [Int] {
  guard let data = text.data(using: .utf8),
    let array = try? JSONSerialization.jsonObject(with: data) as? [Any],
    let ids = array as? [NSNumber], ids.allSatisfy({ Double(Int(exactly: $0.doubleValue) ?? -1) == $0.doubleValue })
  else {
    throw CommandLineError.invalidValue(option: option, value: text, expected: "a JSON array of integers such as [1, 2, 3]")
  }
  return ids.map(\.intValue)
}

/// Encodes a value as JSON text with sorted keys.
func jsonText(_ value: Any) -> String {
  guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "null" }
  return String(decoding: data, as: UTF8.self)
}
