import Foundation

/// Failures while loading a tokenizer or rendering a chat template.
public enum TokenizerError: Error, CustomStringConvertible, LocalizedError, Equatable {
  /// A file could not be read or parsed as JSON.
  case unreadableFile(path: String, reason: String)
  /// A required key is absent or has the wrong type.
  case missingKey(key: String, expected: String, path: String)
  /// A merge entry is not two tokens separated by one space (or a two-element array).
  case malformedMerge(index: Int, entry: String)
  /// A merge names a token, or produces a token, that the vocabulary does not contain.
  case mergeTokenNotInVocabulary(index: Int, token: String)
  /// The pre-tokenizer name is not one this tokenizer implements.
  case unsupportedPreTokenizer(String)
  /// The vocabulary and the token-type array differ in length.
  case tokenTypeCountMismatch(vocabulary: Int, tokenTypes: Int)
  /// A special-token id is outside the vocabulary.
  case tokenIDOutOfRange(name: String, id: Int, vocabularySize: Int)
  /// The chat template uses syntax this interpreter does not implement, or is malformed.
  case templateSyntax(message: String, line: Int, column: Int)
  /// The chat template failed while rendering (type error, unknown filter or function).
  case templateRuntime(message: String)
  /// The chat template called `raise_exception(message)`.
  case templateException(message: String)

  public var description: String {
    switch self {
    case .unreadableFile(let path, let reason):
      return "cannot read tokenizer file \(path): \(reason)"
    case .missingKey(let key, let expected, let path):
      return "key '\(key)' is missing in \(path), expected \(expected)"
    case .malformedMerge(let index, let entry):
      return "merge \(index) is malformed: found \(entry.debugDescription), expected two tokens separated by one space"
    case .mergeTokenNotInVocabulary(let index, let token):
      return "merge \(index) uses token \(token.debugDescription), which is not in the vocabulary"
    case .unsupportedPreTokenizer(let name):
      return "pre-tokenizer '\(name)' is not supported, expected 'smollm' or 'gpt2'"
    case .tokenTypeCountMismatch(let vocabulary, let tokenTypes):
      return "token-type array has \(tokenTypes) entries, expected one per token (\(vocabulary))"
    case .tokenIDOutOfRange(let name, let id, let vocabularySize):
      return "\(name) token id \(id) is outside the vocabulary of \(vocabularySize) tokens"
    case .templateSyntax(let message, let line, let column):
      return "chat template error at line \(line), column \(column): \(message)"
    case .templateRuntime(let message):
      return "chat template failed while rendering: \(message)"
    case .templateException(let message):
      return "chat template raised an exception: \(message)"
    }
  }

  public var errorDescription: String? { description }
}
