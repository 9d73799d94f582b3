import Foundation
import XLlama

/// Options shared by `generate` and `chat`.
let samplingOptions: [OptionSpec] = [
  OptionSpec(name: "--max-tokens", valueName: "N", help: "new tokens at most", defaultDescription: "128"),
  OptionSpec(name: "--temperature", valueName: "T", help: "sampling temperature; 0 picks the most likely token", defaultDescription: "0"),
  OptionSpec(name: "--top-k", valueName: "K", help: "keep the K most likely tokens; 0 keeps all", defaultDescription: "0"),
  OptionSpec(name: "--top-p", valueName: "P", help: "keep the most likely tokens up to probability P", defaultDescription: "1"),
  OptionSpec(name: "--min-p", valueName: "P", help: "drop tokens below P times the top probability", defaultDescription: "0"),
  OptionSpec(name: "--repetition-penalty", valueName: "R", help: "penalty for tokens already seen; 1 disables", defaultDescription: "1"),
  OptionSpec(name: "--seed", valueName: "S", help: "seed of the random draws", defaultDescription: "0"),
]

/// Parses and checks the sampling options before any model loads.
func samplingParameters(_ options: ParsedOptions) throws -> SamplingParameters {
  guard let seed = UInt64(options.string("--seed") ?? "0") else {
    throw CommandLineError.invalidValue(option: "--seed", value: options.string("--seed") ?? "", expected: "a non-negative integer")
  }
  let sampling = SamplingParameters(
    temperature: try options.float("--temperature", default: 0),
    topK: try options.integer("--top-k", default: 0, range: 0...Int(Int32.max)),
    topP: try options.float("--top-p", default: 1),
    minP: try options.float("--min-p", default: 0),
    repetitionPenalty: try options.float("--repetition-penalty", default: 1),
    seed: seed)
  do {
    try sampling.validate()
  } catch GenerationError.invalidParameter(let name, let value, let expected) {
    throw CommandLineError.invalidValue(option: "--" + name, value: value, expected: expected)
  }
  _ = try options.integer("--max-tokens", default: 128, range: 1...1_000_000)
  return sampling
}

func generationOptions(
  _ options: ParsedOptions, sampling: SamplingParameters, loaded: LoadedModel, defaultMaxTokens: Int = 128
) throws -> GenerationOptions {
  GenerationOptions(
    sampling: sampling,
    maxTokens: try options.integer("--max-tokens", default: defaultMaxTokens, range: 1...1_000_000),
    stopTokenIDs: loaded.stopTokenIDs)
}

func reportSpeed(_ summary: GenerationSummary) {
  var line = String(
    format: "prompt: %d tokens, %.1f tok/s | generated: %d tokens, %.1f tok/s | stop: %@",
    summary.promptTokens, summary.promptTokensPerSecond, summary.generatedTokens.count,
    summary.generationTokensPerSecond, summary.stopReason.rawValue)
  if let peak = peakResidentBytes() { line += String(format: " | peak memory %.0f MiB", Double(peak) / 1_048_576) }
  stderrLine(line)
}

enum GenerateCommand: Command {
  static let name = "generate"
  static let summary = "Continue a prompt (or answer it with --chat), streaming the completion to stdout."
  static let usage = "--model PATH --prompt TEXT [options]"
  static let options: [OptionSpec] = [
    modelOption,
    OptionSpec(name: "--prompt", valueName: "TEXT", help: "the text to continue"),
    OptionSpec(name: "--chat", valueName: nil, help: "wrap the prompt as a user message in the model's chat template"),
    OptionSpec(name: "--system", valueName: "TEXT", help: "system message for --chat"),
    OptionSpec(name: "--save-state", valueName: "FILE", help: "student only: write the recurrent state after generating"),
    OptionSpec(name: "--load-state", valueName: "FILE", help: "student only: continue from a saved state instead of an empty context"),
  ] + samplingOptions + [threadsOption]

  static func run(_ options: ParsedOptions) throws {
    try applyThreads(options)
    let prompt = try options.required("--prompt")
    let sampling = try samplingParameters(options)
    if options.string("--system") != nil && !options.flag("--chat") {
      throw CommandLineError.conflicting("--system applies to --chat; add --chat or drop --system")
    }
    let loaded = try loadModel(options)
    let generation = try generationOptions(options, sampling: sampling, loaded: loaded)
    let saveURL = options.string("--save-state").map { URL(fileURLWithPath: $0) }
    if let saveURL { try StateFile.checkWritable(to: saveURL, model: loaded.model) }
    let loadURL = options.string("--load-state").map { URL(fileURLWithPath: $0) }
    let generator = Generator(model: loaded.model, tokenizer: loaded.tokenizer)
    let stream: (String) -> Bool = { piece in
      writeStdout(piece)
      return true
    }

    if options.flag("--chat") {
      var conversation = try Conversation(loaded: loaded, system: options.string("--system"))
      if let loadURL { try conversation.restore(from: loadURL, system: options.string("--system")) }
      let newTokens = try conversation.addUserMessage(prompt)
      let summary = try generator.generate(promptTokens: newTokens, session: conversation.session, options: generation, onText: stream)
      writeStdout("\n")
      reportSpeed(summary)
      conversation.addReply(fedTokens: newTokens, summary: summary)
      if let saveURL {
        try conversation.save(to: saveURL)
        stderrLine("saved the chat (\(conversation.messages.count) messages, \(conversation.fed.count) tokens) to \(saveURL.path)")
      }
      return
    }

    var session = loaded.model.makeSession()
    var history: [Int] = []
    if let loadURL {
      let saved = try StateFile.read(from: loadURL, model: loaded.model)
      if saved.messages != nil {
        throw CommandLineError.conflicting("\(loadURL.path) contains a chat; continue it with --chat")
      }
      session = saved.session
      history = saved.tokens
    }
    let promptTokens = loaded.tokenizer.encode(prompt)
    let summary = try generator.generate(promptTokens: promptTokens, session: session, options: generation, onText: stream)
    writeStdout("\n")
    reportSpeed(summary)
    if let saveURL {
      let tokens = history + promptTokens + summary.generatedTokens + (summary.stopTokenID.map { [$0] } ?? [])
      try StateFile.write(session: session, tokens: tokens, to: saveURL)
      stderrLine("saved the state after \(session.tokenCount) tokens to \(saveURL.path)")
    }
  }
}
