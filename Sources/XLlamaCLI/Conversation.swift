import Foundation
import XLlama

/// A chat whose session has read exactly `fed`, the tokens of `messages` as the chat template
/// renders them plus what the model generated.
///
/// Each turn feeds only what the newly rendered conversation adds to `fed`. When a rendering no
/// longer extends `fed` (the template or tokenizer put the reply's text in other tokens than
/// were generated), the session starts over and reads the whole conversation once.
struct Conversation {
  let loaded: LoadedModel
  let template: ChatTemplate
  var messages: [ChatMessage]
  var session: any ModelSession
  var fed: [Int]

  init(loaded: LoadedModel, system: String?) throws {
    guard let template = loaded.chatTemplate else {
      throw CommandLineError.conflicting("the model at \(loaded.path) has no chat template; use 'xllama generate' without --chat")
    }
    self.loaded = loaded
    self.template = template
    messages = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
    session = loaded.model.makeSession()
    fed = []
  }

  /// Continues a chat saved with `save(to:)`; a `system` message is allowed only for a new chat.
  mutating func restore(from url: URL, system: String?) throws {
    let saved = try StateFile.read(from: url, model: loaded.model)
    guard let savedMessages = saved.messages else {
      throw CommandLineError.conflicting("\(url.path) contains a plain text state, not a chat; continue it without --chat")
    }
    if system != nil {
      throw CommandLineError.conflicting("--system applies to a new chat only; \(url.path) already has its messages")
    }
    messages = savedMessages
    session = saved.session
    fed = saved.tokens
  }

  /// Adds a user message and returns the tokens the session has not read yet.
  mutating func addUserMessage(_ text: String) throws -> [Int] {
    messages.append(ChatMessage(role: "user", content: text))
    let rendered = loaded.tokenizer.encode(try template.render(messages: messages, addGenerationPrompt: true))
    if rendered.starts(with: fed) && rendered.count > fed.count {
      return Array(rendered[fed.count...])
    }
    session = loaded.model.makeSession()
    fed = []
    return rendered
  }

  /// Records a finished reply: the tokens fed and generated, and the assistant message.
  mutating func addReply(fedTokens: [Int], summary: GenerationSummary) {
    fed += fedTokens + summary.generatedTokens + (summary.stopTokenID.map { [$0] } ?? [])
    messages.append(ChatMessage(role: "assistant", content: summary.text))
  }

  func save(to url: URL) throws {
    try StateFile.write(session: session, tokens: fed, messages: messages, to: url)
  }
}
