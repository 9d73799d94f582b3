import Foundation
import XLlama

enum BenchCommand: Command {
  static let name = "bench"
  static let summary = "Measure prompt (prefill) and generation (decode) speed at several context depths."
  static let usage = "--model PATH [--prompt-tokens N] [--gen-tokens N] [--depths LIST] [--repeats N]"
  static let options: [OptionSpec] = [
    modelOption,
    OptionSpec(name: "--prompt-tokens", valueName: "N", help: "tokens in the timed prefill", defaultDescription: "512"),
    OptionSpec(name: "--gen-tokens", valueName: "N", help: "tokens in each timed decode", defaultDescription: "128"),
    OptionSpec(name: "--depths", valueName: "LIST", help: "comma-separated context depths at which decode is timed", defaultDescription: "0,4096"),
    OptionSpec(name: "--repeats", valueName: "N", help: "repetitions of each measurement; the best is reported", defaultDescription: "2"),
    OptionSpec(name: "--json", valueName: nil, help: "print one JSON object per figure instead of a table"),
    OptionSpec(name: "--kernels", valueName: nil, help: "time the single-token matrix products of the model shapes instead (no model needed)"),
    threadsOption,
  ]

  static func run(_ options: ParsedOptions) throws {
    try applyThreads(options)
    if options.flag("--kernels") {
      KernelBench.run()
      KernelBench.runGEMM()
      return
    }
    let promptTokens = try options.integer("--prompt-tokens", default: 512, range: 1...1_000_000)
    let generatedTokens = try options.integer("--gen-tokens", default: 128, range: 1...1_000_000)
    let repeats = try options.integer("--repeats", default: 2, range: 1...100)
    let depthText = options.string("--depths") ?? "0,4096"
    let depths = try depthText.split(separator: ",").map { part -> Int in
      guard let depth = Int(part.trimmingCharacters(in: .whitespaces)), depth >= 0 else {
        throw CommandLineError.invalidValue(option: "--depths", value: depthText, expected: "comma-separated non-negative integers")
      }
      return depth
    }
    let loaded = try loadModel(options)
    let model = loaded.model
    let v = loaded.configuration.vocabularySize
    var random = SplitMix64(seed: 7)
    func randomTokens(_ count: Int) -> [Int] { (0..<count).map { _ in Int(random.next() % UInt64(v)) } }
    if let limit = model.contextLimit, let deepest = depths.max(), deepest + generatedTokens > limit {
      throw CommandLineError.invalidValue(option: "--depths", value: depthText, expected: "depths + --gen-tokens within the model's context of \(limit)")
    }

    var results: [(String, Double, String)] = []
    func record(_ what: String, _ tokensPerSecond: Double, _ note: String = "") {
      results.append((what, tokensPerSecond, note))
      if options.flag("--json") {
        print(jsonText(["what": what, "tok_s": (tokensPerSecond * 10).rounded() / 10, "note": note]))
      } else {
        stderrLine(String(format: "  %@: %.1f tok/s %@", what, tokensPerSecond, note))
      }
    }

    let prompt = randomTokens(promptTokens)
    var best = 0.0
    for _ in 0..<repeats {
      let session = model.makeSession()
      let start = Date()
      _ = try session.append(prompt, logits: .last)
      best = max(best, Double(promptTokens) / Date().timeIntervalSince(start))
    }
    record("prefill \(promptTokens)", best)

    // Decode is compared with a plain read of the model's largest matrix. The read is timed
    // between windows of tokens, so both see the same state of a host whose memory speed drifts,
    // and the ratio is the share of the available bandwidth that the products reach.
    let decodeMatrices = model.decodeMatrices
    let bytesPerToken = decodeMatrices.reduce(0) { $0 + $1.byteCount }
    let probe = decodeMatrices.max { $0.byteCount < $1.byteCount }
    for depth in depths {
      var bestDecode = 0.0
      var bandwidth = (decode: 0.0, stream: 0.0)
      var residentAfter = 0
      for _ in 0..<repeats {
        let session = model.makeSession()
        var logits = Tensor(zeros: [1, v])
        var remaining = randomTokens(max(depth, 1))
        while !remaining.isEmpty {
          let chunk = Array(remaining.prefix(1024))
          remaining.removeFirst(chunk.count)
          logits = try session.append(chunk, logits: remaining.isEmpty ? .last : .none)
        }
        var decodeSeconds = 0.0
        var streamSeconds = 0.0
        var streams = 0
        var done = 0
        while done < generatedTokens {
          let window = min(4, generatedTokens - done)
          let start = DispatchTime.now().uptimeNanoseconds
          for _ in 0..<window {
            let token = Sampler.argmax(logits.data)
            logits = try session.append([token], logits: .last)
          }
          decodeSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
          done += window
          if let probe {
            let streamStart = DispatchTime.now().uptimeNanoseconds
            probe.streamAllBytes()
            streamSeconds += Double(DispatchTime.now().uptimeNanoseconds - streamStart) / 1e9
            streams += 1
          }
        }
        let tokensPerSecond = Double(generatedTokens) / decodeSeconds
        if tokensPerSecond > bestDecode {
          bestDecode = tokensPerSecond
          if let probe, streamSeconds > 0 {
            bandwidth = (tokensPerSecond * Double(bytesPerToken) / 1e9, Double(streams * probe.byteCount) / streamSeconds / 1e9)
          }
        }
        residentAfter = currentResidentBytes() ?? 0
      }
      var note = String(format: "(resident %.0f MiB", Double(residentAfter) / 1_048_576)
      if bandwidth.stream > 0 {
        note += String(
          format: "; weights %.1f GB/s, %.0f%% of a %.1f GB/s plain read between tokens",
          bandwidth.decode, 100 * bandwidth.decode / bandwidth.stream, bandwidth.stream)
      }
      record("decode \(generatedTokens) at depth \(depth)", bestDecode, note + ")")
    }
    if let peak = peakResidentBytes() {
      stderrLine(String(format: "peak resident memory %.0f MiB; %d threads", Double(peak) / 1_048_576, try options.integer("--threads", default: 2)))
    }
  }
}

/// Resident memory of this process now (VmRSS), or nil where /proc is absent.
func currentResidentBytes() -> Int? {
  guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
  for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
    let fields = line.split(separator: " ")
    if fields.count >= 2, let kilobytes = Int(fields[1]) { return kilobytes * 1024 }
  }
  return nil
}
