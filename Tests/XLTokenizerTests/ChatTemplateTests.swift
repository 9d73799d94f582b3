import Testing
import XLTokenizer

/// SmolLM2-135M-Instruct's `tokenizer.chat_template`, copied from the model's metadata.
let smolLM2Template = """
  {% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
  You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
  ' }}{% endif %}{{'<|im_start|>' + message['role'] + '
  ' + message['content'] + '<|im_end|>' + '
  '}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
  ' }}{% endif %}
  """

@Suite("Chat template")
struct ChatTemplateTests {
  @Test("SmolLM2 renders system and user")
  func smolLM2SystemAndUser() throws {
    let template = try ChatTemplate(smolLM2Template)
    let text = try template.render(
      messages: [
        ChatMessage(role: "system", content: "You are terse."),
        ChatMessage(role: "user", content: "What is 2+2?"),
      ],
      addGenerationPrompt: true)
    #expect(
      text == "<|im_start|>system\nYou are terse.<|im_end|>\n"
        + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
  }

  @Test("SmolLM2 inserts default system message")
  func smolLM2DefaultSystem() throws {
    let template = try ChatTemplate(smolLM2Template)
    let text = try template.render(
      messages: [ChatMessage(role: "user", content: "Hi")], addGenerationPrompt: false)
    #expect(
      text == "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        + "<|im_start|>user\nHi<|im_end|>\n")
  }

  @Test("SmolLM2 end of turn token")
  func smolLM2EndOfTurn() throws {
    #expect(try ChatTemplate(smolLM2Template).endOfTurnToken == "<|im_end|>")
    #expect(try ChatTemplate("{{ messages[0].content }}", eosToken: "</s>").endOfTurnToken == "</s>")
  }

  @Test("rendered prompt tokenizes to special ids")
  func renderedPromptTokens() throws {
    guard let tokenizer = try loadSmolLM2Tokenizer() else {
      print("note: skipped, no SmolLM2 vocabulary (set XLLAMA_MODEL)")
      return
    }
    let text = try ChatTemplate(smolLM2Template).render(
      messages: [ChatMessage(role: "user", content: "Hi")], addGenerationPrompt: true)
    let ids = tokenizer.encode(text)
    let imStart = try #require(tokenizer.id(for: "<|im_start|>"))
    let imEnd = try #require(tokenizer.id(for: "<|im_end|>"))
    #expect(ids.filter { $0 == imStart }.count == 3)
    #expect(ids.filter { $0 == imEnd }.count == 2)
    #expect(tokenizer.decode(ids) == text)
  }

  // Expected output produced by Python's jinja2 3.1 (ImmutableSandboxedEnvironment with
  // trim_blocks and lstrip_blocks, as transformers renders chat templates).
  @Test("constructs match jinja2")
  func constructsMatchJinja2() throws {
    let source = """
      {%- set ns = namespace(system='') -%}
      {%- for m in messages if m.role == 'system' -%}{% set ns.system = m.content | trim %}{%- endfor -%}
      {%- set count = 0 -%}
      {% for m in messages[1:] %}
        {% set count = count + 1 %}
        [{{ loop.index }}/{{ loop.length }}{{ ' first' if loop.first else '' }}{{ ' last' if loop.last }}] {{ m['role'] | upper }}: {{ m.content ~ '!' }}
      {% endfor %}
      system={{ ns.system }} count={{ count }} n={{ messages | length }} {{ 'user' in messages[1].role }} {{ not (1 == 2) and 3 != 4 }}
      {# a comment #}
      {% if messages[-1].role == 'user' %}last is user{% elif false %}no{% else %}other{% endif %}
      {{ [1, 2, 3] | join('-') }} {{ {'a': 1}['a'] }} {{ "ab" * 2 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ range(3) | list }} {{ messages[5] is defined }}

      """
    let messages = [
      ChatMessage(role: "system", content: "  Be brief.  "), ChatMessage(role: "user", content: "Hi"),
      ChatMessage(role: "assistant", content: "Hello!"), ChatMessage(role: "user", content: "2+2?"),
    ]
    let expected =
      "  [1/3 first] USER: Hi!\n  [2/3] ASSISTANT: Hello!!\n  [3/3 last] USER: 2+2?!\n"
      + "system=Be brief. count=0 n=4 True True\nlast is user1-2-3 1 abab 3 1 [0, 1, 2] False"
    let text = try ChatTemplate(source).render(messages: messages, addGenerationPrompt: true)
    #expect(text == expected)
  }

  @Test("bos and eos tokens visible")
  func specialTokenVariables() throws {
    let template = try ChatTemplate(
      "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}",
      bosToken: "<s>", eosToken: "</s>")
    let text = try template.render(messages: [ChatMessage(role: "user", content: "x")], addGenerationPrompt: false)
    #expect(text == "<s>x</s>")
  }

  @Test("raise_exception becomes an error")
  func raiseException() throws {
    let template = try ChatTemplate(
      "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}")
    #expect(throws: TokenizerError.templateException(message: "first message must be from the user")) {
      _ = try template.render(messages: [ChatMessage(role: "assistant", content: "x")], addGenerationPrompt: false)
    }
    let text = try template.render(messages: [ChatMessage(role: "user", content: "x")], addGenerationPrompt: false)
    #expect(text == "")
  }

  @Test("unsupported tag names construct and position")
  func unsupportedTag() {
    #expect(
      throws: TokenizerError.templateSyntax(
        message: "unsupported tag '{% macro %}'; supported tags are if, elif, else, for, set", line: 2,
        column: 4)
    ) {
      _ = try ChatTemplate("hello\n{% macro f() %}{% endmacro %}")
    }
  }

  @Test("unclosed block reported")
  func unclosedBlock() {
    do {
      _ = try ChatTemplate("{% if true %}yes")
      Issue.record("expected an error")
    } catch let error as TokenizerError {
      #expect(error.description.contains("endif"))
    } catch {
      Issue.record("unexpected error \(error)")
    }
  }

  @Test("unknown filter reported at render")
  func unknownFilter() throws {
    let template = try ChatTemplate("{{ messages | frobnicate }}")
    #expect(throws: TokenizerError.templateRuntime(message: "unsupported filter 'frobnicate'")) {
      _ = try template.render(messages: [], addGenerationPrompt: false)
    }
  }

  @Test("whitespace control strips both sides")
  func whitespaceControl() throws {
    let template = try ChatTemplate("a  \n  {{- ' b ' -}}  \n  c\n{% if true %}\nd\n{% endif %}\n")
    #expect(try template.render(messages: [], addGenerationPrompt: false) == "a b c\nd\n")
  }

  // Expected outputs produced by Python's jinja2 3.1 with trim_blocks and lstrip_blocks.
  static let sampleConversation = [
    ChatMessage(role: "system", content: " Sys "), ChatMessage(role: "user", content: "Hi "),
    ChatMessage(role: "assistant", content: "Yo"), ChatMessage(role: "user", content: "Q"),
  ]

  @Test("Llama 3 style template")
  func llama3Style() throws {
    let source = #"""
      {{- bos_token }}
      {%- if messages[0]['role'] == 'system' %}
          {%- set system_message = messages[0]['content']|trim %}
          {%- set messages = messages[1:] %}
      {%- else %}
          {%- set system_message = "" %}
      {%- endif %}
      {{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
      {{- system_message }}
      {{- "<|eot_id|>" }}
      {%- for message in messages %}
          {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
              {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
          {%- endif %}
          {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
      {%- endfor %}
      {%- if add_generation_prompt %}
          {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
      {%- endif %}

      """#
    let template = try ChatTemplate(source, bosToken: "<|begin_of_text|>")
    let text = try template.render(messages: Self.sampleConversation, addGenerationPrompt: true)
    let expected =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSys<|eot_id|>"
      + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
      + "<|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>"
      + "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
      + "<|start_header_id|>assistant<|end_header_id|>\n\n"
    #expect(text == expected)
    #expect(template.endOfTurnToken == "<|eot_id|>")

    let wrongOrder = [ChatMessage(role: "assistant", content: "first")]
    #expect(
      throws: TokenizerError.templateException(
        message: "Conversation roles must alternate user/assistant/user/assistant/...")
    ) {
      _ = try template.render(messages: wrongOrder, addGenerationPrompt: false)
    }
  }

  @Test("Zephyr style template")
  func zephyrStyle() throws {
    let source = #"""
      {% for message in messages %}
      {% if message['role'] == 'user' %}
      {{ '<|user|>\n' + message['content'] + eos_token }}
      {% elif message['role'] == 'system' %}
      {{ '<|system|>\n' + message['content'] + eos_token }}
      {% elif message['role'] == 'assistant' %}
      {{ '<|assistant|>\n'  + message['content'] + eos_token }}
      {% endif %}
      {% if loop.last and add_generation_prompt %}
      {{ '<|assistant|>' }}
      {% endif %}
      {% endfor %}
      """#
    let template = try ChatTemplate(source, eosToken: "</s>")
    let text = try template.render(messages: Self.sampleConversation, addGenerationPrompt: true)
    #expect(text == "<|system|>\n Sys </s>\n<|user|>\nHi </s>\n<|assistant|>\nYo</s>\n<|user|>\nQ</s>\n<|assistant|>\n")
  }
}
