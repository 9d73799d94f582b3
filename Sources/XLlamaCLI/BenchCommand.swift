import Foundation
import XLlama

enum BenchCommand: Command {
  static let name = "bench"
  static let summary = "Measure prompt (prefill) and generation (decode) speed at several context depths."
  static let usage = "--model PATH [--against PATH] [--prompt-tokens N] [--gen-tokens N] [--depths LIST] [--repeats N]"
  static let options: [OptionSpec] = [
    modelOption,
    OptionSpec(
      name: "--against", valueName: "PATH",
      help: "a second model, measured in the same process with its prefills and decode windows alternating with the first's, and compared with it"),
    OptionSpec(name: "--prompt-tokens", valueName: "N", help: "tokens in the timed prefill", defaultDescription: "512"),
    OptionSpec(name: "--gen-tokens", valueName: "N", help: "tokens in each timed decode", defaultDescription: "128"),
    OptionSpec(name: "--depths", valueName: "LIST", help: "comma-separated context depths at which decode is timed", defaultDescription: "0,4096"),
    OptionSpec(name: "--repeats", valueName: "N", help: "repetitions of each measurement; the best is reported, and for --against the median of each run's ratio", defaultDescription: "2"),
    OptionSpec(name: "--json", valueName: nil, help: "print one JSON object per figure instead of a table"),
    OptionSpec(name: "--kernels", valueName: nil, help: "time the single-token matrix products of the model shapes instead (no model needed)"),
    threadsOption,
  ]

  /// One model under measurement, with the label its figures carry when two are compared.
  private struct Subject {
    let model: any LanguageModel
    let vocabularySize: Int
    let label: String
  }

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
    var subjects: [Subject] = []
    for option in ["--model", "--against"] where option == "--model" || options.string(option) != nil {
      let loaded = try loadModel(options, option: option)
      subjects.append(Subject(model: loaded.model, vocabularySize: loaded.configuration.vocabularySize, label: try options.required(option)))
    }
    for subject in subjects {
      if let limit = subject.model.contextLimit, let deepest = depths.max(), deepest + generatedTokens > limit {
        throw CommandLineError.invalidValue(
          option: "--depths", value: depthText,
          expected: "depths + --gen-tokens within the context of \(limit) tokens of \(subject.label)")
      }
    }
    let comparing = subjects.count > 1
    var random = SplitMix64(seed: 7)
    func randomTokens(_ count: Int, vocabularySize v: Int) -> [Int] { (0..<count).map { _ in Int(random.next() % UInt64(v)) } }

    func record(_ what: String, _ tokensPerSecond: Double, _ note: String = "") {
      if options.flag("--json") {
        print(jsonText(["what": what, "tok_s": (tokensPerSecond * 10).rounded() / 10, "note": note]))
      } else {
        stderrLine(String(format: "  %@: %.1f tok/s %@", what, tokensPerSecond, note))
      }
    }
    func recordRatio(_ what: String, _ ratio: Double) {
      if options.flag("--json") {
        print(jsonText(["what": what, "ratio": (ratio * 1000).rounded() / 1000]))
      } else {
        stderrLine(String(format: "  %@: %.3f", what, ratio))
      }
    }
    func named(_ what: String, _ subject: Subject) -> String { comparing ? "\(what) (\(subject.label))" : what }

    // Prefill: the subjects take turns, and each keeps its best run.
    let prompts = subjects.map { randomTokens(promptTokens, vocabularySize: $0.vocabularySize) }
    var bestPrefill = [Double](repeating: 0, count: subjects.count)
    for _ in 0..<repeats {
      for (index, subject) in subjects.enumerated() {
        let session = subject.model.makeSession()
        let start = Date()
        _ = try session.append(prompts[index], logits: .last)
        bestPrefill[index] = max(bestPrefill[index], Double(promptTokens) / Date().timeIntervalSince(start))
      }
    }
    for (index, subject) in subjects.enumerated() { record(named("prefill \(promptTokens)", subject), bestPrefill[index]) }
    if comparing { recordRatio("prefill ratio, second over first", bestPrefill[1] / bestPrefill[0]) }

    for depth in depths {
      var best: [DecodeTiming?] = Array(repeating: nil, count: subjects.count)
      // The ratio within each run, where both models saw the same host. Their best runs may
      // come from different repeats, so the ratio is not taken from those.
      var ratios: [Double] = []
      var residentAfter = 0
      for _ in 0..<repeats {
        let sessions = try subjects.map { subject in
          try DecodeRun(model: subject.model, context: randomTokens(max(depth, 1), vocabularySize: subject.vocabularySize))
        }
        let timings = try DecodeRun.alternate(sessions, tokens: generatedTokens)
        for (index, timing) in timings.enumerated() where timing.tokensPerSecond > (best[index]?.tokensPerSecond ?? 0) {
          best[index] = timing
        }
        if comparing { ratios.append(timings[1].tokensPerSecond / timings[0].tokensPerSecond) }
        residentAfter = currentResidentBytes() ?? 0
      }
      for (index, subject) in subjects.enumerated() {
        guard let timing = best[index] else { continue }
        // With two models loaded the process's resident memory is not either model's.
        var parts = comparing ? [] : [String(format: "resident %.0f MiB", Double(residentAfter) / 1_048_576)]
        if let share = timing.bandwidth {
          parts.append(String(
            format: "weights %.1f GB/s, %.0f%% of a %.1f GB/s plain read between tokens",
            share.decode, 100 * share.decode / share.read, share.read))
        }
        let note = parts.isEmpty ? "" : "(\(parts.joined(separator: "; ")))"
        record(named("decode \(generatedTokens) at depth \(depth)", subject), timing.tokensPerSecond, note)
      }
      if comparing {
        recordRatio("decode ratio at depth \(depth), second over first, median over runs", median(ratios))
      }
    }
    if let peak = peakResidentBytes() {
      let scope = comparing ? "both models" : "the model"
      let threads = try options.integer("--threads", default: 2)
      stderrLine(String(format: "peak resident memory %.0f MiB (%@); %d threads", Double(peak) / 1_048_576, scope, threads))
    }
  }

  /// Returns the median of `values`, which must not be empty.
  private static func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    let middle = sorted.count / 2
    if sorted.count % 2 == 1 { return sorted[middle] }
    return (sorted[middle - 1] + sorted[middle]) / 2
  }
}

/// Decode speed of one timed run, and the share of memory bandwidth its weights streamed at.
struct DecodeTiming {
  var tokensPerSecond: Double
  /// GB/s of decode's weights and of the plain read timed beside it, or nil for a model that
  /// lists no decode matrices.
  var bandwidth: (decode: Double, read: Double)?
}

/// A session filled to a context depth, ready for timed decode.
struct DecodeRun {
  let model: any LanguageModel
  let session: any ModelSession
  var logits: Tensor

  init(model: any LanguageModel, context: [Int]) throws {
    self.model = model
    session = model.makeSession()
    logits = Tensor(zeros: [1, 1])
    var remaining = context[...]
    while !remaining.isEmpty {
      let chunk = Array(remaining.prefix(1024))
      remaining = remaining.dropFirst(chunk.count)
      logits = try session.append(chunk, logits: remaining.isEmpty ? .last : .none)
    }
  }

  /// Decodes `tokens` greedy tokens with each run, in alternating windows of 4 tokens, and
  /// returns each run's timing.
  ///
  /// Decode is compared with a plain read of the model's largest matrix, timed after every
  /// window, so that both see the same state of a host whose memory speed drifts. Their ratio is
  /// the share of the available bandwidth that the products reach. Several runs alternate their
  /// windows so that they too see the same host.
  static func alternate(_ runs: [DecodeRun], tokens: Int) throws -> [DecodeTiming] {
    var runs = runs
    var decodeSeconds = [Double](repeating: 0, count: runs.count)
    var readSeconds = [Double](repeating: 0, count: runs.count)
    var reads = [Int](repeating: 0, count: runs.count)
    let probes = runs.map { run in run.model.decodeMatrices.max { $0.byteCount < $1.byteCount } }
    var done = 0
    while done < tokens {
      let window = min(4, tokens - done)
      for index in runs.indices {
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<window {
          let token = Sampler.argmax(runs[index].logits.data)
          runs[index].logits = try runs[index].session.append([token], logits: .last)
        }
        decodeSeconds[index] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if let probe = probes[index] {
          let readStart = DispatchTime.now().uptimeNanoseconds
          probe.streamAllBytes()
          readSeconds[index] += Double(DispatchTime.now().uptimeNanoseconds - readStart) / 1e9
          reads[index] += 1
        }
      }
      done += window
    }
    return runs.indices.map { index in
      let tokensPerSecond = Double(tokens) / decodeSeconds[index]
      var timing = DecodeTiming(tokensPerSecond: tokensPerSecond, bandwidth: nil)
      if let probe = probes[index], readSeconds[index] > 0 {
        let bytesPerToken = runs[index].model.decodeMatrices.reduce(0) { $0 + $1.byteCount }
        timing.bandwidth = (
          tokensPerSecond * Double(bytesPerToken) / 1e9, Double(reads[index] * probe.byteCount) / readSeconds[index] / 1e9
        )
      }
      return timing
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
