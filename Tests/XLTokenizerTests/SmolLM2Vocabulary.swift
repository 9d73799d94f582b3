import Foundation
import XLTokenizer

/// Loads the SmolLM2 tokenizer for the fixture tests, or returns nil when no vocabulary is
/// available (the caller skips with a note).
///
/// Reads the Hugging Face style folder named by `XLLAMA_TOKENIZER_DIR` (`tokenizer.json` and
/// `tokenizer_config.json`). Every fixture test goes through this one function, so switching the
/// source to the model's GGUF file changes only this body.
func loadSmolLM2Tokenizer() throws -> BPETokenizer? {
  guard let folder = ProcessInfo.processInfo.environment["XLLAMA_TOKENIZER_DIR"], !folder.isEmpty
  else {
    return nil
  }
  let url = URL(fileURLWithPath: folder).appendingPathComponent("tokenizer.json")
  return try BPETokenizer(tokenizerJSON: url)
}
