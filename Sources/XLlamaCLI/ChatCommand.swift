import Foundation
import XLlama

enum ChatCommand: Command {
  static let name = "chat"
  static let summary = "Chat with a model through its chat template; an empty line or end of input quits."
  static let usage = "--model PATH [options]"
  static let options: [OptionSpec] = [
    modelOption,
    OptionSpec(name: "--system", valueName: "TEXT", help: "system message at the start of the conversation"),
  ] + samplingOptions + [threadsOption]

  static func run(_ options: ParsedOptions) throws {
    try applyThreads(options)
    let loaded = try loadModel(options)
    guard let template = loaded.chatTemplate else {
      throw CommandLineError.conflicting("the model at \(loaded.path) has no chat template; use 'xllama generate'")
    }
    let generation = try generationOptions(options, loaded: loaded, defaultMaxTokens: 256)
    let generator = Generator(model: loaded.model, tokenizer: loaded.tokenizer)
    var messages: [ChatMessage] = []
    if let system = options.string("--system") { messages.append(ChatMessage(role: "system", content: system)) }

    // The session holds `fed` tokens; each turn feeds only what the newly rendered conversation
    // adds, and starts over when the rendering no longer extends what was fed.
    var session = loaded.model.makeSession()
    var fed: [Int] = []
    while true {
      writeStdout("> ")
      guard let line = readLine(), !line.trimmingCharacters(in: .whitespaces).isEmpty else { break }
      messages.append(ChatMessage(role: "user", content: line))
      let rendered = loaded.tokenizer.encode(try template.render(messages: messages, addGenerationPrompt: true))
      var newTokens = rendered
      if rendered.starts(with: fed) && rendered.count > fed.count {
        newTokens = Array(rendered[fed.count...])
      } else {
        session = loaded.model.makeSession()
        fed = []
      }
      let summary = try generator.generate(promptTokens: newTokens, session: session, options: generation) { piece in
        writeStdout(piece)
        return true
      }
      writeStdout("\n")
      reportSpeed(summary)
      fed += newTokens + summary.generatedTokens + (summary.stopTokenID.map { [$0] } ?? [])
      messages.append(ChatMessage(role: "assistant", content: summary.text))
    }
  }
}
