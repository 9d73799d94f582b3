import Foundation
import XLlama

enum ChatCommand: Command {
  static let name = "chat"
  static let summary = "Chat with a model through its chat template; an empty line or end of input quits."
  static let usage = "--model PATH [--system TEXT] [--load-state FILE] [--save-state FILE] [options]"
  static let options: [OptionSpec] = [
    modelOption,
    OptionSpec(name: "--system", valueName: "TEXT", help: "system message at the start of a new conversation"),
    OptionSpec(name: "--load-state", valueName: "FILE", help: "student only: continue a chat saved with --save-state"),
    OptionSpec(name: "--save-state", valueName: "FILE", help: "student only: save the chat after every reply"),
  ] + samplingOptions + [threadsOption]

  static func run(_ options: ParsedOptions) throws {
    try applyThreads(options)
    let sampling = try samplingParameters(options)
    let loaded = try loadModel(options)
    let generation = try generationOptions(options, sampling: sampling, loaded: loaded, defaultMaxTokens: 256)
    let saveURL = options.string("--save-state").map { URL(fileURLWithPath: $0) }
    if let saveURL { try StateFile.checkWritable(to: saveURL, model: loaded.model) }
    var conversation = try Conversation(loaded: loaded, system: options.string("--system"))
    if let path = options.string("--load-state") {
      try conversation.restore(from: URL(fileURLWithPath: path), system: options.string("--system"))
      stderrLine("continuing a chat of \(conversation.messages.count) messages (\(conversation.fed.count) tokens) from \(path)")
    }
    let generator = Generator(model: loaded.model, tokenizer: loaded.tokenizer)

    while true {
      writeStdout("> ")
      guard let line = readLine(), !line.trimmingCharacters(in: .whitespaces).isEmpty else { break }
      let newTokens = try conversation.addUserMessage(line)
      let summary = try generator.generate(promptTokens: newTokens, session: conversation.session, options: generation) { piece in
        writeStdout(piece)
        return true
      }
      writeStdout("\n")
      reportSpeed(summary)
      conversation.addReply(fedTokens: newTokens, summary: summary)
      if let saveURL { try conversation.save(to: saveURL) }
    }
  }
}
