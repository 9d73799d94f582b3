import Foundation

/// One turn of a conversation.
public struct ChatMessage: Sendable, Equatable {
  /// Speaker, such as "system", "user" or "assistant".
  public var role: String
  public var content: String

  public init(role: String, content: String) {
    self.role = role
    self.content = content
  }
}

/// A Hugging Face chat template (`tokenizer.chat_template` in GGUF, `chat_template` in
/// `tokenizer_config.json`), parsed once and rendered with a small Jinja interpreter.
///
/// Supported tags are `{% if/elif/else/endif %}`,
/// `{% for x in xs [if cond] %}…{% else %}…{% endfor %}`, `{% set x = … %}`,
/// `{% set ns.x = … %}`, `{{ … }}` and comments. Whitespace control covers `{%-`, `-%}` and the
/// `trim_blocks`/`lstrip_blocks` options that Hugging Face enables. Expressions cover literals,
/// lists and dictionaries, arithmetic, `~`, comparisons, `and/or/not/in`, `a if b else c`,
/// attributes, indexing and slices, and `loop.*`. Builtins cover common filters (`trim`,
/// `length`, `default`, `tojson`, …), tests (`is defined`, `is string`, …), `namespace()`,
/// `range()` and `raise_exception()`. Anything else throws `TokenizerError.templateSyntax` with its line and
/// column (when parsing) or `TokenizerError.templateRuntime` naming it (when rendering).
public struct ChatTemplate: Sendable {
  /// Template text as stored in the model.
  public let source: String
  /// Value of `bos_token` inside the template.
  public var bosToken: String?
  /// Value of `eos_token` inside the template.
  public var eosToken: String?
  private let nodes: [JinjaNode]

  /// Parses `source`. Throws `TokenizerError.templateSyntax` for malformed or unsupported syntax.
  public init(_ source: String, bosToken: String? = nil, eosToken: String? = nil) throws {
    self.source = source
    self.bosToken = bosToken
    self.eosToken = eosToken
    self.nodes = try JinjaParser.parse(source)
  }

  /// Token that ends each turn in this template's format, guessed from the text: `<|im_end|>`
  /// (ChatML), `<|eot_id|>` (Llama 3), `<end_of_turn>` (Gemma) or `<|end|>` (Phi-3) when the
  /// template contains it, else `eosToken`.
  public var endOfTurnToken: String? {
    for marker in ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"] where source.contains(marker) {
      return marker
    }
    return eosToken
  }

  /// Renders the conversation. The template receives `messages` (a list of `{role, content}`),
  /// `add_generation_prompt`, `bos_token` and `eos_token`.
  /// - Throws: `TokenizerError.templateException` when the template calls `raise_exception`,
  ///   `TokenizerError.templateRuntime` for type errors or unsupported filters and functions.
  public func render(messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
    let messageValues: [JinjaValue] = messages.map { message in
      .makeDictionary([("role", .string(message.role)), ("content", .string(message.content))])
    }
    var globals: [String: JinjaValue] = [
      "messages": .list(messageValues),
      "add_generation_prompt": .bool(addGenerationPrompt),
    ]
    globals["bos_token"] = bosToken.map { .string($0) } ?? .undefined
    globals["eos_token"] = eosToken.map { .string($0) } ?? .undefined
    var interpreter = JinjaInterpreter(globals: globals)
    try interpreter.render(nodes)
    return interpreter.output
  }
}
