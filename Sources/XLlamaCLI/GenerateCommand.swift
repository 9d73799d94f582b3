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

func generationOptions(_ options: ParsedOptions, loaded: LoadedModel, defaultMaxTokens: Int = 128) throws -> GenerationOptions {
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
  try sampling.validate()
  return GenerationOptions(
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
    let loaded = try loadModel(options)
    let generation = try generationOptions(options, loaded: loaded)

    var text = prompt
    if options.flag("--chat") {
      guard let template = loaded.chatTemplate else {
        throw CommandLineError.conflicting("--chat: the model at \(loaded.path) has no chat template")
      }
      var messages: [ChatMessage] = []
      if let system = options.string("--system") { messages.append(ChatMessage(role: "system", content: system)) }
      messages.append(ChatMessage(role: "user", content: prompt))
      text = try template.render(messages: messages, addGenerationPrompt: true)
    }

    var session = loaded.model.makeSession()
    var history: [Int] = []
    if let statePath = options.string("--load-state") {
      let saved = try StateFile.read(from: URL(fileURLWithPath: statePath), model: loaded.model)
      session = saved.session
      history = saved.tokens
    }
    let promptTokens = loaded.tokenizer.encode(text)
    let generator = Generator(model: loaded.model, tokenizer: loaded.tokenizer)
    let summary = try generator.generate(promptTokens: promptTokens, session: session, options: generation) { piece in
      writeStdout(piece)
      return true
    }
    writeStdout("\n")
    reportSpeed(summary)
    if let statePath = options.string("--save-state") {
      let tokens = history + promptTokens + summary.generatedTokens + (summary.stopTokenID.map { [$0] } ?? [])
      try StateFile.write(session: session, tokens: tokens, to: URL(fileURLWithPath: statePath))
      stderrLine("saved the state after \(session.tokenCount) tokens to \(statePath)")
    }
  }
}
