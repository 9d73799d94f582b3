public struct ChatMessage: Sendable { public var role: String; public var content: String
  public init(role: String, content: String) { self.role = role; self.content = content } }
public struct ChatTemplate: Sendable {
  public let source: String
  public init(_ source: String, bosToken: String?, eosToken: String?) throws { self.source = source }
  public var endOfTurnToken: String? { source.contains("<|im_end|>") ? "<|im_end|>" : nil }
  public func render(messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
    var s = ""
    if messages.first?.role != "system" { s += "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n" }
    for m in messages { s += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
    if addGenerationPrompt { s += "<|im_start|>assistant\n" }
    return s
  }
}
